#!/usr/bin/env bash
# Records what the agent's device probe reads from nvidia-smi on a real GPU machine, for the
# parsers' tests (Tests/FastGPUAgentTests/Fixtures): the probe's own query, -L, the topology,
# a wider telemetry query (utilisation, memory, temperature, clocks, ECC) and the full XML.
#
#   scripts/record-nvidia-smi.sh OUT-DIR NAME     # e.g. ... /tmp/rec h200
#
# Each file is written as nvidia-smi printed it; a query a driver does not know writes its error
# instead (the file says so), so a recording never silently lacks a field.
set -uo pipefail
out=${1:?OUT-DIR}; name=${2:?NAME}
mkdir -p "$out"
probe="index,uuid,name,memory.total,mig.mode.current,power.draw,total_energy_consumption,ecc.errors.uncorrected.volatile.total,pci.bus_id"
telemetry="index,uuid,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,power.limit,total_energy_consumption,temperature.gpu,temperature.memory,clocks.sm,clocks.mem,pstate,ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total,retired_pages.pending,clocks_throttle_reasons.active"
# A field this driver does not know is dropped (and named in NAME.fields.txt), as the agent does.
query() {  # fields file format
  local fields=$1 file=$2 format=$3 output
  while :; do
    if output=$(nvidia-smi --query-gpu="$fields" --format="$format" 2>&1); then
      printf '%s\n' "$output" > "$file"; echo "$(basename "$file"): $fields" >> "$out/$name.fields.txt"; return
    fi
    bad=$(printf '%s' "$output" | sed -n 's/^Field "\(.*\)" is not a valid field to query.*/\1/p' | head -1)
    [ -n "$bad" ] || { printf '%s\n' "$output" > "$file"; return; }
    echo "$(basename "$file"): this driver does not know $bad" >> "$out/$name.fields.txt"
    fields=$(printf '%s' "$fields" | tr ',' '\n' | grep -vx "$bad" | paste -sd, -)
  done
}
: > "$out/$name.fields.txt"
query "$probe" "$out/$name.query.csv" csv,noheader,nounits
nvidia-smi -L > "$out/$name.list.txt" 2>&1
nvidia-smi topo -m > "$out/$name.topo.txt" 2>&1
query "$telemetry" "$out/$name.telemetry.csv" csv,noheader,nounits
query "$telemetry" "$out/$name.telemetry-header.csv" csv
nvidia-smi --help-query-gpu > "$out/$name.help-query-gpu.txt" 2>&1
nvidia-smi -q -x > "$out/$name.q.xml" 2>&1
nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits > "$out/$name.apps.csv" 2>&1
{ nvidia-smi --version 2>&1 || nvidia-smi 2>&1 | head -4; } > "$out/$name.version.txt"
ls -l "$out"
