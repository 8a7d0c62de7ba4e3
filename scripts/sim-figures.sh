#!/usr/bin/env bash
# Reproduces the simulator figures of the README (release build, this machine's 2 cores).
# Traces are read from ../shared/traces (see each SOURCE.md); outputs go to docs/sim/.
set -euo pipefail
cd "$(dirname "$0")/.."
traces=${TRACES:-../shared/traces}
slurm=${SLURM_WORKLOAD:-../shared/peers/slurm/workloads/mixed-120.csv}
out=docs/sim
mkdir -p "$out"
swift build -c release --product fastgpu
bin=.build/release/fastgpu

echo "== Philly, 2.5M-3.1M s into the trace (2017-10-03 to 2017-10-10), 40 nodes x 8 GPUs"
$bin sim compare --trace "$traces/philly-pollux/philly.csv" --nodes 40 --from-s 2500000 --to-s 3100000 \
  --policies fifo,sjf-oracle,srtf-oracle,las,fastgpu --json "$out/philly-week.json" --svg "$out/philly-week-jct.svg"

echo "== Helios Venus, 2 VCs, September 2020: 22 nodes x 8 GPUs"
$bin sim compare --trace "$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv" --nodes 22 \
  --policies fifo,sjf-oracle,srtf-oracle,las,fastgpu --json "$out/helios.json" --svg "$out/helios-jct.svg"

echo "== Helios with its two VCs apart: 20 + 2 nodes x 8 GPUs, jobs confined to their VC"
$bin sim compare --trace "$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv" --pools vcvGl=20,vcvlY=2 \
  --policies fifo,sjf-oracle,srtf-oracle,las,fastgpu --json "$out/helios-pools.json"

echo "== Start estimates as the server makes them, against actual starts (Philly week; Helios 22 nodes)"
$bin sim run --trace "$traces/philly-pollux/philly.csv" --nodes 40 --from-s 2500000 --to-s 3100000 --policy fastgpu --estimate-every 600 \
  | grep '^start estimates' | tee "$out/estimates.txt"
$bin sim run --trace "$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv" --nodes 22 --policy fastgpu --estimate-every 600 \
  | grep '^start estimates' | tee -a "$out/estimates.txt"

echo "== The robustness figure, how policies are judged: every Philly window at 32, 40, 48 nodes; Helios 20-26 nodes and pooled"
python3 scripts/sim_robustness.py --fastgpu "$bin" --traces "$traces" --out "$out"

echo "== Robustness (history): fastgpu / srtf-oracle over 11 clusters and windows (the default, and the default before claim and tail)"
# The default was chosen on the geometric mean of this ratio over all 11 points, not on one point.
policies=srtf-oracle,fastgpu,fastgpu:claim=0:tail=asLongAgain,fastgpu:claim=0,fastgpu:tail=asLongAgain,fastgpu:weigh=true
helios="$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv"
philly="$traces/philly-pollux/philly.csv"
sweep=$(mktemp -d)
{
  for n in 20 21 22 23 24 26; do
    $bin sim compare --trace "$helios" --nodes $n --policies $policies --json "$sweep/sweep-helios-$n.json" >/dev/null
  done
  $bin sim compare --trace "$helios" --pools vcvGl=20,vcvlY=2 --policies $policies --json "$sweep/sweep-helios-pools.json" >/dev/null
  for w in "2500000 3100000 36" "2500000 3100000 40" "2500000 3100000 48" "4000000 4600000 40"; do
    set -- $w
    $bin sim compare --trace "$philly" --nodes "$3" --from-s "$1" --to-s "$2" --policies $policies --json "$sweep/sweep-philly-$1-$3.json" >/dev/null
  done
}
python3 scripts/sim_sweep_table.py "$sweep"/sweep-helios-{20,21,22,23,24,26,pools}.json "$sweep"/sweep-philly-*.json | tee "$out/sweep.md"
rm -r "$sweep"

echo "== Slurm peer workload mixed-120: 16 nodes x 8 GPUs"
$bin sim compare --trace "$slurm" --format slurm --nodes 16 --policies fifo,sjf-oracle,srtf-oracle,las,fastgpu --json "$out/mixed-120.json"

echo "== Alibaba 2023 packing (FGD method): openb default pods on the 1,213 GPU nodes"
$bin sim pack --pods "$traces/alibaba-gpu-v2023/openb_pod_list_default.csv" --node-list "$traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv" \
  --policies random,best-fit,fgd,fastgpu --json "$out/alibaba-packing.json" --svg "$out/alibaba-packing.svg"

echo "== The same packing, 64 feasible nodes scored per pod"
$bin sim pack --pods "$traces/alibaba-gpu-v2023/openb_pod_list_default.csv" --node-list "$traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv" \
  --policies fgd,fastgpu --scoring-limit 64

echo "== Speed: the whole Philly file (82,247 jobs), default policy, 80 nodes x 8 GPUs"
/usr/bin/time -f "wall %e s, peak RSS %M KB" $bin sim run --trace "$traces/philly-pollux/philly.csv" --nodes 80 --policy fastgpu
