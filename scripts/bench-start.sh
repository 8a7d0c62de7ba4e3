#!/usr/bin/env bash
# Job-start benchmark: FastGPU and Slurm side by side, in one run, on this machine, on the same
# 1-GPU `sleep 1` workload and the same 16 nodes x 8 GPUs.
#
#   FastGPU: a release `fastgpu server` and 16 `fastgpu agent` processes with 8 simulated
#            H100s each, on loopback; jobs are real processes started by the agents.
#   Slurm:   ../shared/peers/slurm (slurmctld + 16 slurmd with 8 fake GPUs each, low-latency
#            SchedulerParameters), measured with its own bench.py.
#
# Experiments (the same on both):
#   trickle  100 jobs, one every 100 ms, into an idle cluster: submit -> process running p50/p99
#            (FastGPU twice: HTTP POSTs, and `fastgpu run -d` as Slurm's sbatch)
#   submit   2000 jobs from 4 clients as fast as they go: sustained job starts per second
#   burst    128 jobs at once (Slurm: one 128-task array): first submit -> all 128 running
#
#   scripts/bench-start.sh                 # both systems
#   SYSTEMS=fastgpu scripts/bench-start.sh # one of them
# Results: $OUT (default /tmp/fastgpu-bench-start) and a table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SYSTEMS=${SYSTEMS:-"fastgpu slurm"}
OUT=${OUT:-/tmp/fastgpu-bench-start}
PORT=${PORT:-18471}
TRICKLE=${TRICKLE:-100}
SUBMIT=${SUBMIT:-2000}
BURST=${BURST:-128}
SLURM_DIR=${SLURM_DIR:-$ROOT/../shared/peers/slurm}
rm -rf "$OUT"; mkdir -p "$OUT"

run_fastgpu() {
  # BIN=path/to/fastgpu measures that binary instead (an A/B of two builds on one machine).
  local bin=${BIN:-$ROOT/.build/release/fastgpu} dir=$OUT/fastgpu-state
  [ -n "${BIN:-}" ] || swift build -c release --product fastgpu >/dev/null
  mkdir -p "$dir"
  "$bin" server --data-dir "$dir/server" --port "$PORT" --log-level error >"$dir/server.log" 2>&1 &
  local server=$!
  PIDS=$server
  trap 'kill $PIDS 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  local url="http://127.0.0.1:$PORT" token
  token=$(cat "$dir/server/admin-token")
  local join
  join=$(curl -sf -X POST "$url/v1/tokens" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"bench","kind":"join"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  for n in $(seq 1 16); do
    "$bin" agent --server "$url" --join-token "$join" --data-dir "$dir/agent-$n" --name "node-$n" \
      --simulate-gpus 8xH100-80GB --cpus 64 --memory-mib 262144 --log-level error >"$dir/agent-$n.log" 2>&1 &
    PIDS="$PIDS $!"
  done
  for _ in $(seq 1 200); do
    [ "$(curl -sf "$url/v1/nodes" -H "Authorization: Bearer $token" | python3 -c 'import json,sys; print(sum(n["state"]=="ready" for n in json.load(sys.stdin)["items"]))')" = 16 ] && break
    sleep 0.1
  done
  local pids=${PIDS// /,}
  echo "== FastGPU: 16 agents x 8 GPUs ready; trickle $TRICKLE"
  python3 scripts/bench_start.py trickle "$TRICKLE" --interval 0.1 --url "$url" --token "$token" --dir "$dir/stamps" --out "$OUT/fastgpu-trickle" --pids "$pids" >/dev/null
  echo "== FastGPU: trickle $TRICKLE through the CLI (fastgpu run -d)"
  python3 scripts/bench_start.py trickle "$TRICKLE" --interval 0.1 --cli "$bin" --url "$url" --token "$token" --dir "$dir/stamps" --out "$OUT/fastgpu-trickle-cli" --pids "$pids" >/dev/null
  echo "== FastGPU: submit $SUBMIT from 4 clients"
  python3 scripts/bench_start.py submit "$SUBMIT" --parallel 4 --url "$url" --token "$token" --dir "$dir/stamps" --out "$OUT/fastgpu-submit" --pids "$pids" >/dev/null
  echo "== FastGPU: burst $BURST"
  python3 scripts/bench_start.py burst "$BURST" --url "$url" --token "$token" --dir "$dir/stamps" --out "$OUT/fastgpu-burst" --pids "$pids" >/dev/null
  kill -TERM $PIDS 2>/dev/null || true
  wait 2>/dev/null || true
  trap - EXIT
}

run_slurm() {
  echo "== Slurm: starting 16 slurmd x 8 GPUs ($SLURM_DIR/start.sh)"
  "$SLURM_DIR/start.sh" >"$OUT/slurm-start.log" 2>&1 || { tail -5 "$OUT/slurm-start.log"; exit 1; }
  trap '"$SLURM_DIR/stop.sh" >/dev/null 2>&1 || true' EXIT
  echo "== Slurm: trickle $TRICKLE"
  python3 "$SLURM_DIR/bench.py" trickle "$TRICKLE" --interval 0.1 --hold 1 --out "$OUT/slurm-trickle" >/dev/null
  echo "== Slurm: submit $SUBMIT from 4 clients"
  python3 "$SLURM_DIR/bench.py" submit "$SUBMIT" --parallel 4 --sleep 1 --out "$OUT/slurm-submit" >/dev/null
  echo "== Slurm: burst $BURST (one array)"
  python3 "$SLURM_DIR/bench.py" array "$BURST" --hold 1 --out "$OUT/slurm-burst" >/dev/null
  "$SLURM_DIR/stop.sh" >/dev/null 2>&1 || true
  trap - EXIT
}

for system in $SYSTEMS; do "run_$system"; done

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name, "summary.json")))
    except OSError:
        return None
rows = []
def get(d, *path):
    for p in path:
        if d is None: return None
        d = d.get(p)
    return d
f = {e: load(f"fastgpu-{e}") for e in ("trickle", "trickle-cli", "submit", "burst")}
s = {e: load(f"slurm-{e}") for e in ("trickle", "submit", "burst")}
def ms(x): return "-" if x is None else f"{x*1000:.1f} ms"
def num(x): return "-" if x is None else f"{x}"
lines = [
  ("idle submit -> process running p50", ms(get(f["trickle"], "submit_to_job_running_s", "p50")), ms(get(s["trickle"], "submit_to_job_running_s", "p50"))),
  ("idle submit -> process running p99", ms(get(f["trickle"], "submit_to_job_running_s", "p99")), ms(get(s["trickle"], "submit_to_job_running_s", "p99"))),
  ("  the same, submitted with the CLI, p50", ms(get(f["trickle-cli"], "submit_to_job_running_s", "p50")), ms(get(s["trickle"], "submit_to_job_running_s", "p50"))),
  ("  the same, submitted with the CLI, p99", ms(get(f["trickle-cli"], "submit_to_job_running_s", "p99")), ms(get(s["trickle"], "submit_to_job_running_s", "p99"))),
  ("submissions/s (4 clients)", num(get(f["submit"], "submissions_per_s")), num(get(s["submit"], "submissions_per_s"))),
  ("sustained job starts/s (bound 128/s)", num(get(f["submit"], "sustained_starts_per_s")), num(get(s["submit"], "sustained_starts_per_s"))),
  ("submit run: first -> last job start (s)", num(get(f["submit"], "first_to_last_start_s")), num(get(s["submit"], "first_to_last_start_s"))),
  ("burst of 128: all running after", num(get(f["burst"], "first_submit_to_all_running_s")), num(get(s["burst"], "submit_to_job_running_s", "max"))),
  ("burst of 128: jobs running per s", num(get(f["burst"], "jobs_running_per_s")), num(get(s["burst"], "jobs_running_per_s_jobside"))),
]
print("\n%-40s %18s %18s" % ("", "FastGPU", "Slurm 22.05"))
for name, a, b in lines:
    print("%-40s %18s %18s" % (name, a, b))
print("\n(Slurm's starts/s are slurmctld allocations; FastGPU's are job processes running. Slurm submits with sbatch, FastGPU with HTTP POSTs.)")
print(f"raw summaries: {out}/*/summary.json")
EOF
