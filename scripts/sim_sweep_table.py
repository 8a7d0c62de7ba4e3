#!/usr/bin/env python3
"""Prints fastgpu-variant / srtf-oracle average JCT over the sweep's clusters and windows, with
geometric means (all points, and without the two overloaded Helios clusters of 20 and 21 nodes).
Input: the --json files of `fastgpu sim compare` runs whose policies start with srtf-oracle."""
import json, math, os, sys

points, ratios = [], {}
for path in sys.argv[1:]:
    name = os.path.basename(path)[len("sweep-"):-len(".json")]
    reports = json.load(open(path))
    base = next(r for r in reports if r["policy"] == "srtf-oracle")["averageJCT"]
    points.append(name)
    for r in reports:
        if r["policy"] != "srtf-oracle":
            ratios.setdefault(r["policy"], {})[name] = r["averageJCT"] / base

def gmean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))

overloaded = {"helios-20", "helios-21"}
print("| policy | " + " | ".join(points) + " | geometric mean | without helios-20/21 |")
print("|---" * (len(points) + 3) + "|")
for policy, by_point in ratios.items():
    cells = [f"{by_point[p]:.3f}" for p in points]
    rest = [by_point[p] for p in points if p not in overloaded]
    print(f"| {policy} | " + " | ".join(cells) + f" | {gmean(list(by_point.values())):.3f} | {gmean(rest):.3f} |")
