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

echo "== Helios: how fastgpu / srtf-oracle moves with cluster size, preemption grace and service measure"
for n in 20 21 22 23 24 26; do
  $bin sim compare --trace "$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv" --nodes $n \
    --policies srtf-oracle,fastgpu,fastgpu:measure=gpu | tail -2 | sed "s/^/nodes $n: /"
done
$bin sim compare --trace "$traces/helios-venus-sept-2vc/helios_venus_2vc_sept.csv" --nodes 22 \
  --policies srtf-oracle,fastgpu:grace=0,fastgpu:grace=2,fastgpu:grace=4,fastgpu:grace=6,fastgpu:grace=8,fastgpu:grace=10,fastgpu:grace=12,fastgpu:grace=16,fastgpu:grace=9:measure=gpu | tail -9

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
