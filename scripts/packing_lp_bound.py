#!/usr/bin/env python3
"""LP-relaxation upper bound for `fastgpu sim pack` (the FGD packing experiment).

Replays the same pod sequence as `fastgpu sim pack` (pods sorted by creation time, drawn with
replacement by SplitMix64 with the same seed until the arrived GPU demand reaches each load), then
solves, per load, the linear relaxation of "place as much GPU demand as possible":

  maximise   sum over pod types t and node types k of gpu_t * x[t,k]
  subject to sum_k x[t,k] <= arrived_t                       (no more pods than arrived)
             sum_t gpu_t * x[t,k] <= nodes_k * gpus_k         (GPU capacity of node type k)
             sum_t cpu_t * x[t,k] <= nodes_k * cpu_k          (CPU)
             sum_t mem_t * x[t,k] <= nodes_k * mem_k          (memory)
             sum over whole-GPU pods of gpus_t * x[t,k]
               + sum over shares above 500 milli of x[t,k] <= nodes_k * gpus_k
                                                           (two shares above half a GPU never share one)
             x[t,k] = 0 where a pod needs more GPUs than a node of type k has
             x >= 0

Any real placement is a feasible point of this LP, so its optimum bounds the allocation ratio
from above (tighter than min(1, demand / capacity), because CPU and memory bind too). It ignores
that shares must fit on one GPU and pods are indivisible, so it is not tight.

Usage: scripts/packing_lp_bound.py PODS.csv NODES.csv [--loads 100,110,120,130] [--seed 1]
Needs scipy (pip install scipy).
"""
import argparse
import csv
from collections import Counter

from scipy.optimize import linprog
from scipy.sparse import lil_matrix

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def read_pods(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    pods = []
    for i, r in enumerate(rows):
        gpus = int(r["num_gpu"])
        milli = int(r["gpu_milli"]) if gpus else 0
        demand = milli if gpus == 1 else gpus * 1000
        pods.append((int(r["creation_time"]), i, (gpus, demand, int(r["cpu_milli"]), int(r["memory_mib"]))))
    pods.sort(key=lambda p: (p[0], p[1]))  # the simulator's order: creation time, then file order
    return [p[2] for p in pods]


def read_nodes(path):
    with open(path, newline="") as f:
        kinds = Counter((int(r["gpu"]), int(r["cpu_milli"]), int(r["memory_mib"])) for r in csv.DictReader(f))
    return kinds


def bound(arrived, node_kinds):
    types = list(arrived)
    kinds = list(node_kinds)
    columns = [(t, k) for t in range(len(types)) for k in range(len(kinds)) if types[t][0] <= kinds[k][0]]
    rows = len(types) + 4 * len(kinds)
    a = lil_matrix((rows, len(columns)))
    b = [arrived[t] for t in types] + [0] * (4 * len(kinds))
    for k, (gpus, cpu, mem) in enumerate(kinds):
        count = node_kinds[kinds[k]]
        b[len(types) + 4 * k] = count * gpus * 1000
        b[len(types) + 4 * k + 1] = count * cpu
        b[len(types) + 4 * k + 2] = count * mem
        b[len(types) + 4 * k + 3] = count * gpus
    c = []
    for j, (t, k) in enumerate(columns):
        gpus, demand, cpu, mem = types[t]
        a[t, j] = 1
        a[len(types) + 4 * k, j] = demand
        a[len(types) + 4 * k + 1, j] = cpu
        a[len(types) + 4 * k + 2, j] = mem
        whole_gpus = gpus if demand == gpus * 1000 else (1 if demand > 500 else 0)
        a[len(types) + 4 * k + 3, j] = whole_gpus
        c.append(-demand)
    result = linprog(c, A_ub=a.tocsr(), b_ub=b, bounds=(0, None), method="highs")
    if result.status != 0:
        raise SystemExit(f"LP failed: {result.message}")
    return -result.fun


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pods")
    parser.add_argument("nodes")
    parser.add_argument("--loads", default="100,110,120,130")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    pods = read_pods(args.pods)
    node_kinds = read_nodes(args.nodes)
    capacity = sum(count * gpus * 1000 for (gpus, _, _), count in node_kinds.items())
    loads = sorted(int(x) for x in args.loads.split(","))
    rng = SplitMix64(args.seed)
    arrived = Counter()
    demand = 0
    print("load   min(1, demand/capacity)   LP relaxation bound")
    for load in loads:
        while demand * 100 < capacity * load:
            pod = pods[rng.next() % len(pods)]
            arrived[pod] += 1
            demand += pod[1]
        lp = bound(arrived, node_kinds) / capacity
        print(f"{load:3d}%   {min(1.0, demand / capacity) * 100:6.2f}%                  {lp * 100:6.2f}%")


if __name__ == "__main__":
    main()
