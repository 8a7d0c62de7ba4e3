#!/usr/bin/env bash
# Upload throughput of FastGPU's S3 client against `aws s3 cp`, to the same moto server on
# loopback, same file, same run. Usage: scripts/bench-storage.sh [SIZE_MIB] (default 1024).
# Needs moto_server and the aws CLI; builds fastgpu in release.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
work=$(mktemp -d)
trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT

swift build -c release --product fastgpu >/dev/null
fastgpu=$(swift build -c release --show-bin-path)/fastgpu

moto_server -H 127.0.0.1 -p 0 >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do grep -q "Running on" "$work/moto.log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/moto.log" | head -1)
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
aws --endpoint-url "$url" s3 mb s3://bench >/dev/null

head -c $((size_mib << 20)) /dev/urandom >"$work/object.bin"
echo "file: $size_mib MiB; moto at $url; $(nproc) cores"

for round in 1 2; do
  start=$(date +%s.%N)
  aws --endpoint-url "$url" s3 cp --quiet "$work/object.bin" s3://bench/aws/object.bin
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v m="$size_mib" -v r="$round" 'BEGIN { printf "aws s3 cp (round %d)  %.2f s = %.1f MiB/s\n", r, e - s, m / (e - s) }'
  echo -n "fastgpu (round $round)    "
  "$fastgpu" bench storage --endpoint "$url" --bucket bench --file "$work/object.bin" --key "fastgpu/object.bin" --no-download
done
