#!/usr/bin/env bash
# What isolation costs a job's start: submit -> the job's first instruction, one job at a time,
# on one agent with 8 simulated H100s, in three ways:
#   host       a process of the agent's user (--isolation off)
#   isolated   a process of its project's user in its own mount namespace (the default as root)
#   container  podman + runc, user namespace, only its devices (an image made here: busybox),
#              on its own network (isolated, the default) and with none
#
#   sudo scripts/bench-isolation.sh            # JOBS=50 each; BIN=path/to/fastgpu for another build
# Needs root, podman, runc and a static /bin/busybox (apt-get install podman runc busybox-static).
# Results: $OUT (default /tmp/fastgpu-bench-isolation) and one JSON line per mode at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-/tmp/fastgpu-bench-isolation}
PORT=${PORT:-18472}
JOBS=${JOBS:-50}
IMAGE=localhost/fastgpu-bench-busybox:1
BIN=${BIN:-$ROOT/.build/release/fastgpu}
[ "$(id -u)" = 0 ] || { echo "run as root: isolation switches users" >&2; exit 1; }
[ -x "$BIN" ] || swift build -c release --product fastgpu >/dev/null
rm -rf "$OUT"; mkdir -p "$OUT"
# Not under /tmp: an isolated job has a private one.
STATE=/var/tmp/fastgpu-bench-isolation-$$
mkdir -p "$STATE"

if ! podman image exists "$IMAGE"; then
  rootfs=$STATE/rootfs
  mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/"
  for tool in sh cat; do ln -s busybox "$rootfs/bin/$tool"; done
  tar -C "$rootfs" -c . | podman import - "$IMAGE" >/dev/null
fi

PIDS=""
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$STATE"' EXIT
"$BIN" server --data-dir "$STATE/server" --port "$PORT" --log-level error --heartbeat-ttl 1 --heartbeat-grace 1 >"$OUT/server.log" 2>&1 &
PIDS=$!
url="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
token=$(cat "$STATE/server/admin-token")
join=$(curl -sf -X POST "$url/v1/tokens" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"bench","kind":"join"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

ready_nodes() {
  curl -sf "$url/v1/nodes" -H "Authorization: Bearer $token" | python3 -c 'import json,sys; print(sum(n["state"]=="ready" for n in json.load(sys.stdin)["items"]))'
}

measure() { # mode, agent flags..., then -- and the bench's extra flags
  local mode=$1; shift
  local flags=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
  [ $# -gt 0 ] && shift && extra=("$@")
  "$BIN" agent --server "$url" --join-token "$join" --data-dir "$STATE/agent-$mode" --name "node-$mode" \
    --simulate-gpus 8xH100-80GB --cpus 64 --memory-mib 262144 --log-level error "${flags[@]}" >"$OUT/agent-$mode.log" 2>&1 &
  local agent=$!
  PIDS="$PIDS $agent"
  for _ in $(seq 1 200); do [ "$(ready_nodes)" = 1 ] && break; sleep 0.1; done
  python3 scripts/bench_isolation.py --url "$url" --token "$token" --mode "$mode" --jobs "$JOBS" "${extra[@]}" | tee -a "$OUT/results.jsonl"
  kill "$agent"; wait "$agent" 2>/dev/null || true
  # The next agent alone is ready: this node goes down after its heartbeat TTL.
  for _ in $(seq 1 100); do [ "$(ready_nodes)" = 0 ] && break; sleep 0.2; done
}

measure host --isolation off --containers off
measure isolated --containers off
measure container -- --image "$IMAGE"
measure container-none -- --image "$IMAGE" --network none
