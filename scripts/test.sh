#!/usr/bin/env bash
# The whole test suite: the Swift packages' tests, then the Python SDK's (pytest against a real
# `fastgpu up` that the first step built, and moto for an S3 backend).
#
# The Python environment comes first (scripts/python-env.sh: made once, then reused): its
# moto_server is what the Swift storage tests start too.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/python-env.sh)"
export PATH="$venv/bin:$PATH"
swift test
swift build --product fastgpu
FASTGPU_SERVE_PYTHON="$venv/bin/python" "$venv/bin/python" -m pytest -q python/tests
