#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on loopback for the store tests and prints its URL
# (postgres://fastgpu@127.0.0.1:PORT/postgres, trust auth on loopback only). Runs initdb and
# pg_ctl as the postgres user when started as root (PostgreSQL refuses root). Idempotent: a
# server already running in the directory is reused.
#   export FASTGPU_TEST_POSTGRES="$(scripts/postgres-test-server.sh)"
set -euo pipefail
port="${FASTGPU_TEST_POSTGRES_PORT:-55432}"
dir="${FASTGPU_TEST_POSTGRES_DIR:-/tmp/fastgpu-test-postgres}"
bin="$(dirname "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")"
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -f "$dir/data/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as "$bin/initdb" -D "$dir/data" -U fastgpu --auth=trust >/dev/null
fi
if ! as "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=500" start >/dev/null
fi
echo "postgres://fastgpu@127.0.0.1:$port/postgres"
