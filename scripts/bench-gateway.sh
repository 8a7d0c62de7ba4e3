#!/usr/bin/env bash
# The gateway benchmark: requests/s and added latency of FastGPU's gateway in front of one
# replica, against nginx as the same reverse proxy, and against calling the replica directly.
# The replica is nginx answering a fixed body (so the proxies are what is measured); it runs as a
# service's replica, started by the agent like any other. Everything runs on this machine, the
# load generator (`fastgpu bench serve`) included.
#
#   scripts/bench-gateway.sh [RATE=1000] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000}
SECONDS_=${2:-10}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
swift build -c release --product fastgpu >/dev/null
BIN=$(swift build -c release --show-bin-path)/fastgpu
DIR=$(mktemp -d /tmp/fastgpu-bench-gateway.XXXXXX)
chmod 755 "$DIR"
cleanup() { kill "$UP" 2>/dev/null || true; pkill -f "$DIR/up/agents" 2>/dev/null || true; [ -f "$DIR/proxy.pid" ] && kill "$(cat "$DIR/proxy.pid")" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
PORT=$((20000 + RANDOM % 10000)); GATEWAY=$((PORT + 1)); PROXY=$((PORT + 2))
"$BIN" up --data-dir "$DIR/up" --port "$PORT" --gateway-port "$GATEWAY" --log-level error >"$DIR/up.log" 2>&1 &
UP=$!
for _ in $(seq 100); do [ -f "$DIR/up/admin-token" ] && curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
export FASTGPU_SERVER="http://127.0.0.1:$PORT" FASTGPU_TOKEN="$(cat "$DIR/up/admin-token")"
cat >"$DIR/svc.yaml" <<YAML
name: bench
command: [sh, -c, "sed s/@PORT@/\$PORT/ $PWD/scripts/bench/nginx-replica.conf > nginx.conf && exec nginx -p \$PWD -c \$PWD/nginx.conf"]
resources: {gpus: 1}
replicas: {min: 1, max: 1}
readiness: {intervalSeconds: 1, timeoutSeconds: 0.5}
YAML
"$BIN" serve up "$DIR/svc.yaml" >/dev/null
ENDPOINT=""
for _ in $(seq 300); do
  ENDPOINT=$("$BIN" services show bench -o json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin)["replicas"] if x["state"]=="ready"]; print(r[0]["endpoint"] if r else "")')
  [ -n "$ENDPOINT" ] && break; sleep 0.1
done
[ -n "$ENDPOINT" ] || { echo "the replica did not become ready" >&2; exit 1; }
sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$PROXY|" -e "s|@UPSTREAM@|${ENDPOINT##*:}|" scripts/bench/nginx-proxy.conf >"$DIR/proxy.conf"
mkdir -p "$DIR"/{body,proxy,fastcgi,uwsgi,scgi}
nginx -p "$DIR" -c "$DIR/proxy.conf" &
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PROXY/health" >/dev/null && break; sleep 0.1; done
python3 - "$RATE" "$SECONDS_" >"$DIR/open.csv" <<'PY'
import sys
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
print("t_s,duration_s")
for i in range(int(rate * seconds)):
    print(f"{i / rate:.6f},0")
PY
python3 -c 'print("t_s,duration_s"); [print("0,0") for _ in range(30000)]' >"$DIR/closed.csv"
run() { # NAME ARGS...: open loop at RATE, then closed loop with 64 workers
  local name=$1; shift
  "$BIN" bench serve --trace "$DIR/open.csv" "$@" -o json >"$DIR/$name-open.json"
  "$BIN" bench serve --trace "$DIR/closed.csv" --closed-loop 64 "$@" -o json >"$DIR/$name-closed.json"
}
run direct --target "http://$ENDPOINT/predict"
run nginx --target "http://127.0.0.1:$PROXY/predict"
run gateway --service bench --gateway "http://127.0.0.1:$GATEWAY"
python3 - "$DIR" "$RATE" <<'PY'
import json, sys
d, rate = sys.argv[1], sys.argv[2]
rows = {}
for name in ["direct", "nginx", "gateway"]:
    o = json.load(open(f"{d}/{name}-open.json")); c = json.load(open(f"{d}/{name}-closed.json"))
    rows[name] = (o, c)
base = rows["direct"][0]
print(f"open loop at {rate} requests/s: latency p50/p99 (added over direct p50/p99); closed loop, 64 workers: requests/s")
for name, (o, c) in rows.items():
    added = "" if name == "direct" else f" (+{o['latencyP50Milliseconds'] - base['latencyP50Milliseconds']:.2f} / +{o['latencyP99Milliseconds'] - base['latencyP99Milliseconds']:.2f} ms)"
    print(f"  {name:8} {o['latencyP50Milliseconds']:.2f} / {o['latencyP99Milliseconds']:.2f} ms{added}; dropped {o['dropped']}; {c['requestsPerSecond']:.0f} requests/s (dropped {c['dropped']})")
g, n = rows["gateway"][1]["requestsPerSecond"], rows["nginx"][1]["requestsPerSecond"]
print(f"gateway throughput = {g / n:.2f} x nginx's")
PY
