#!/usr/bin/env bash
# Prints the path of the Python environment the SDK's tests run in, making it first if needed:
# a virtual environment with the SDK and its test extras (numpy, onnx, onnxruntime, pytest,
# moto). It lives where jobs can read it (the tests' model servers run its python as the
# project's user, which reads neither /root nor the tests' private /tmp): /opt when writable,
# else ~/.cache. FASTGPU_SDK_VENV chooses another place.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FASTGPU_SDK_VENV:-}"
if [ -z "$venv" ]; then
  if [ -w /opt ]; then venv=/opt/fastgpu-sdk-venv; else venv="$HOME/.cache/fastgpu-sdk-venv"; fi
fi
# Debian's python (not one under /root): its files are readable by every user.
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
stamp="$venv/.fastgpu-sdk-$(sha256sum python/pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -e 'python[test]' >&2
  touch "$stamp"
fi
chmod -R a+rX "$venv"
echo "$venv"
