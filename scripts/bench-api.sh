#!/usr/bin/env bash
# API benchmark: a release build of `fastgpu server` on loopback, loaded by wrk on the same
# machine (they share its cores). Prints GET /v1/jobs/{id} and durable POST /v1/jobs figures,
# then stops the server and counts the jobs in its SQLite file: every 201 must be there.
#
#   scripts/bench-api.sh            # 10 s per run, 64 connections
#   DURATION=30 CONNECTIONS=128 scripts/bench-api.sh
#   STORES="sqlite postgres" scripts/bench-api.sh   # both stores in one run (PostgreSQL from
#                                   # scripts/postgres-test-server.sh, on the same cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18470}
STORES=${STORES:-sqlite}
command -v wrk >/dev/null || { echo "bench-api: wrk is missing (apt-get install wrk)" >&2; exit 1; }

# BIN=path/to/fastgpu measures that binary instead (an A/B of two builds on one machine).
if [ -z "${BIN:-}" ]; then
  swift build -c release --product fastgpu >/dev/null
  BIN=.build/release/fastgpu
fi
for STORE in $STORES; do
DIR=$(mktemp -d /tmp/fastgpu-bench.XXXXXX)
if [ "$STORE" = postgres ]; then
  PG=$(scripts/postgres-test-server.sh | tail -1)
  DB=fastgpu_bench_$RANDOM$RANDOM
  psql "$PG" -X -q -c "CREATE DATABASE $DB"
  "$BIN" server --store "${PG%/*}/$DB" --data-dir "$DIR" --port "$PORT" --max-pending-jobs 10000000 --log-level error >"$DIR/server.log" 2>&1 &
else
  "$BIN" server --data-dir "$DIR" --port "$PORT" --max-pending-jobs 10000000 --log-level error >"$DIR/server.log" 2>&1 &
fi
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [ -s "$DIR/admin-token" ] && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$(cat "$DIR/admin-token")
URL="http://127.0.0.1:$PORT"
AUTH="Authorization: Bearer $TOKEN"

# A node, so that the scheduler places work while the API is loaded, and one job to read.
JOIN=$(curl -sf -X POST "$URL/v1/tokens" -H "$AUTH" -H 'Content-Type: application/json' -d '{"name":"bench join","kind":"join"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
for n in $(seq 1 16); do
  curl -sf -X POST "$URL/v1/nodes/register" -H "Authorization: Bearer $JOIN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$n\",\"cpuMillis\":128000,\"memoryMiB\":1048576,\"gpus\":[$(printf '{"model":"H100-80GB","memoryMiB":81559},%.0s' $(seq 1 7)){\"model\":\"H100-80GB\",\"memoryMiB\":81559}]}" >/dev/null
done
curl -sf -X POST "$URL/v1/jobs" -H "$AUTH" -H 'Content-Type: application/json' -d '{"project":"default","command":["sleep","1"],"resources":{"gpus":1}}' >/dev/null

echo "== [$STORE] GET /v1/jobs/1 (wrk -t1 -c$CONNECTIONS -d${DURATION}s)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$AUTH" "$URL/v1/jobs/1" | tee "$DIR/get.txt" | grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors"

if [ "$STORE" = postgres ]; then
  # A second control plane on the same database: it follows and forwards every request to the leader.
  "$BIN" server --store "${PG%/*}/$DB" --data-dir "$DIR/follower" --port $((PORT + 1)) --log-level error >"$DIR/follower.log" 2>&1 &
  FOLLOWER=$!
  for _ in $(seq 1 100); do curl -sf -H "$AUTH" "http://127.0.0.1:$((PORT + 1))/v1/jobs/1" >/dev/null && break; sleep 0.1; done
  echo "== [$STORE] GET /v1/jobs/1 through a follower (wrk -t1 -c$CONNECTIONS -d${DURATION}s)"
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$AUTH" "http://127.0.0.1:$((PORT + 1))/v1/jobs/1" | tee "$DIR/get-follower.txt" \
    | grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors"
  kill -TERM $FOLLOWER; wait $FOLLOWER 2>/dev/null || true
fi

echo "== [$STORE] POST /v1/jobs, durable (wrk -t1 -c$CONNECTIONS -d${DURATION}s)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s scripts/wrk-submit.lua -H "$AUTH" "$URL/v1/jobs" | tee "$DIR/post.txt" \
  | grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors|acknowledged_201|other_status"

kill -TERM $PID; wait $PID 2>/dev/null || true
ACK=$(awk '/acknowledged_201/ {print $2}' "$DIR/post.txt")
if [ "$STORE" = postgres ]; then
  STORED=$(psql "${PG%/*}/$DB" -X -A -t -c "select count(*) from job")
  psql "$PG" -X -q -c "DROP DATABASE $DB WITH (FORCE)"
else
  STORED=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from job').fetchone()[0])" "$DIR/fastgpu.db")
fi
echo "== [$STORE] durability: $ACK submissions acknowledged; $STORED jobs in the database after SIGTERM (1 seeded before)"
if [ "$STORED" -lt $((ACK + 1)) ]; then echo "bench-api: acknowledged jobs are missing from the database" >&2; exit 1; fi
rm -rf "$DIR"
trap - EXIT
done
