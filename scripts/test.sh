#!/usr/bin/env bash
# The whole test suite: the Swift packages' tests, then the Python SDK's (pytest against a real
# `fastgpu up` that the first step built, and moto for an S3 backend).
#
# The Python environment comes first (scripts/python-env.sh: made once, then reused): its
# moto_server is what the Swift storage tests start too.
#
# Where PostgreSQL is installed (initdb and pg_ctl), a throwaway server on loopback
# (scripts/postgres-test-server.sh) runs the store conformance suite on PostgreSQL as well, and
# the API suite a second time with PostgreSQL as the control plane's store. Without it those
# say they were not run; FASTGPU_REQUIRE_POSTGRES_TESTS=1 (CI) makes that a failure. There, a short
# failover run follows: three control planes on it, four agents, the leader killed three times and
# cut off from the database once (scripts/failover.py; its README figures come from 20 kills).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/python-env.sh)"
export PATH="$venv/bin:$PATH"
if [ -z "${FASTGPU_TEST_POSTGRES:-}" ] && { command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }; then
  FASTGPU_TEST_POSTGRES="$(scripts/postgres-test-server.sh)"
  export FASTGPU_TEST_POSTGRES
fi
if [ -z "${FASTGPU_TEST_POSTGRES:-}" ]; then
  [ "${FASTGPU_REQUIRE_POSTGRES_TESTS:-}" = 1 ] && { echo "PostgreSQL tests required, but no PostgreSQL here" >&2; exit 1; }
  echo "note: no PostgreSQL here (initdb, pg_ctl): the PostgreSQL store tests do not run" >&2
fi
swift test
# The alert rules and the Grafana dashboard's queries (promtool, from Debian's prometheus package).
if command -v promtool >/dev/null; then
  scripts/check-observability.sh
else
  [ "${FASTGPU_REQUIRE_PROMTOOL:-}" = 1 ] && { echo "promtool required, but not installed (Debian: prometheus)" >&2; exit 1; }
  echo "note: no promtool here: the alert rules and dashboard queries are not checked" >&2
fi
if [ -n "${FASTGPU_TEST_POSTGRES:-}" ]; then
  FASTGPU_TEST_STORE=postgres swift test --skip-build --filter FastGPUAPITests
fi
swift build --product fastgpu
if [ -n "${FASTGPU_TEST_POSTGRES:-}" ]; then
  python3 scripts/failover.py --fastgpu .build/debug/fastgpu --postgres "$FASTGPU_TEST_POSTGRES" --kills 3 --partitions 1 \
    --agents 4 --clients 2 --between 2 3
fi
FASTGPU_SERVE_PYTHON="$venv/bin/python" "$venv/bin/python" -m pytest -q python/tests
