#!/usr/bin/env python3
"""The robustness figure: every policy over every non-overlapping window of the Philly trace at
several cluster sizes, and over Helios at several sizes and with its VCs apart; per policy the
geometric mean, median and worst ratio of average JCT to srtf-oracle's, and the number of points
where it is more than 10 % worse than las. A table (Markdown), the numbers (JSON) and a chart
(SVG, one line per policy) go to docs/sim/.

    python3 scripts/sim_robustness.py [--fastgpu .build/release/fastgpu] [--parallel 2]
        [--rerun fastgpu] [--only philly|helios] [--philly-nodes 32,40,48] [--helios-nodes 20,...,26]

Each simulation's report is kept under .build/sim-robustness/ (not in git), per binary and set of
policies: a run that stops resumes where it was, and a rebuilt binary starts afresh. A point whose simulation fails is reported as failed, never left out silently.
"""
import argparse, concurrent.futures, datetime, hashlib, json, math, os, statistics, subprocess, sys

POLICIES = ["srtf-oracle", "las", "fastgpu", "fifo", "sjf-oracle", "srtf-predicted", "fair-share"]
WINDOW = 600_000


def philly_span(path):
    first = last = None
    with open(path) as f:
        next(f)
        for line in f:
            if not line.strip():
                continue
            stamp = datetime.datetime.strptime(line.split(",", 1)[0], "%Y-%m-%d %H:%M:%S")
            first = stamp if first is None or stamp < first else first
            last = stamp if last is None or stamp > last else last
    return int((last - first).total_seconds())


def points(args):
    traces = args.traces
    philly = f"{traces}/philly-pollux/philly.csv"
    helios = f"{traces}/helios-venus-sept-2vc/helios_venus_2vc_sept.csv"
    out = []
    if args.only in (None, "philly"):
        span = philly_span(philly)
        for nodes in [int(n) for n in args.philly_nodes.split(",")]:
            for k in range(span // WINDOW):
                a, b = k * WINDOW, (k + 1) * WINDOW
                out.append((f"philly-{nodes}n-{a // 1000}k", ["--trace", philly, "--nodes", str(nodes), "--from-s", str(a), "--to-s", str(b)]))
    if args.only in (None, "helios"):
        for nodes in [int(n) for n in args.helios_nodes.split(",")]:
            out.append((f"helios-{nodes}n", ["--trace", helios, "--nodes", str(nodes)]))
        out.append(("helios-pools", ["--trace", helios, "--pools", "vcvGl=20,vcvlY=2"]))
    return out


def run(args, name, arguments):
    cache = os.path.join(args.cache, name + ".json")
    if os.path.exists(cache):
        return name, json.load(open(cache)), None
    tmp = cache + ".tmp"
    policies = args.rerun.split(",") if args.rerun else args.policies.split(",")
    command = [args.fastgpu, "sim", "compare", *arguments, "--policies", ",".join(policies), "--json", tmp]
    started = datetime.datetime.now()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        return name, None, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    reports = json.load(open(tmp))
    slim = [{"policy": r["policy"], "averageJCT": r["averageJCT"], "averageQueueing": r["averageQueueing"],
             "jobs": len(r.get("completionTimes", []))} for r in reports]
    if args.rerun:
        # The other policies' figures from the last full run (their code did not change).
        previous = json.load(open(args.reuse))["averageJCT"].get(name, {})
        slim += [{"policy": p, "averageJCT": v} for p, v in previous.items() if p not in policies and p in args.policies.split(",")]
    json.dump(slim, open(cache, "w"))
    os.remove(tmp)
    print(f"{name}: {(datetime.datetime.now() - started).total_seconds():.0f} s", file=sys.stderr, flush=True)
    return name, slim, None


def gmean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def svg(names, ratios, policies):
    width, height, left, top, bottom = 1100, 460, 60, 20, 150
    plot_w, plot_h = width - left - 180, height - top - bottom
    values = [ratios[p][n] for p in policies for n in names if n in ratios[p]]
    hi = max(2.0, min(64.0, max(values) if values else 2.0))
    lo = 1.0
    while lo > 0.125 and values and min(values) < lo:
        lo /= 2
    y = lambda v: top + plot_h - (math.log(min(max(v, lo), hi) / lo) / math.log(hi / lo)) * plot_h
    x = lambda i: left + (i + 0.5) * plot_w / max(1, len(names))
    colours = ["#3451b2", "#d92d20", "#067647", "#b54708", "#6941c6", "#0e9384", "#667085"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    tick = lo
    while tick <= hi:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e4e7ec"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}×</text>')
        tick *= 2
    for i, name in enumerate(names):
        parts.append(f'<text transform="translate({x(i):.1f},{top + plot_h + 8}) rotate(60)" font-size="9">{name}</text>')
    for k, policy in enumerate(policies):
        colour = colours[k % len(colours)]
        line = [f"{x(i):.1f},{y(ratios[policy][n]):.1f}" for i, n in enumerate(names) if n in ratios[policy]]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(line)}"/>')
        for point in line:
            px, py = point.split(",")
            parts.append(f'<circle cx="{px}" cy="{py}" r="2.2" fill="{colour}"/>')
        parts.append(f'<text x="{left + plot_w + 12}" y="{top + 14 + 16 * k}" fill="{colour}">{policy}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">average JCT ÷ srtf-oracle per point (log scale); scripts/sim_robustness.py</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fastgpu", default=".build/release/fastgpu")
    ap.add_argument("--traces", default=os.environ.get("TRACES", "../shared/traces"))
    ap.add_argument("--out", default="docs/sim")
    ap.add_argument("--cache", default=".build/sim-robustness")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--rerun", help="run only these policies (comma-separated) and take the others' figures from --reuse")
    ap.add_argument("--reuse", default="docs/sim/robustness.json")
    ap.add_argument("--only", choices=["philly", "helios"])
    ap.add_argument("--philly-nodes", default="32,40,48")
    ap.add_argument("--helios-nodes", default="20,21,22,23,24,25,26")
    args = ap.parse_args()
    # A rebuilt binary or another set of policies gets a cache of its own: stale reports never mix in.
    stamp = f"{os.path.getmtime(args.fastgpu):.0f}|{args.policies}|{args.rerun}"
    args.cache = os.path.join(args.cache, hashlib.sha256(stamp.encode()).hexdigest()[:12])
    os.makedirs(args.cache, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    policies = args.policies.split(",")
    assert policies[0] == "srtf-oracle" and "las" in policies, "srtf-oracle first, and las, are the yardsticks"
    todo = points(args)
    results, failed = {}, {}
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        for name, reports, error in pool.map(lambda p: run(args, *p), todo):
            if error:
                failed[name] = error
            else:
                results[name] = reports
    names = [n for n, _ in todo if n in results]
    ratios = {p: {} for p in policies if p != "srtf-oracle"}
    jct = {}
    for name in names:
        by = {r["policy"]: r["averageJCT"] for r in results[name]}
        jct[name] = by
        base = by.get("srtf-oracle")
        if not base:
            failed[name] = "no srtf-oracle result (an empty window?)"
            continue
        for p in ratios:
            if p in by:
                ratios[p][name] = by[p] / base
    names = [n for n in names if n not in failed]
    rows = []
    for p, by in ratios.items():
        values = [by[n] for n in names if n in by]
        worst = max(names, key=lambda n: by.get(n, 0)) if values else "-"
        behind_las = [n for n in names if n in by and jct[n][p] > 1.10 * jct[n]["las"]]
        rows.append({"policy": p, "points": len(values), "geometricMean": gmean(values), "median": statistics.median(values) if values else None,
                     "worst": by.get(worst), "worstPoint": worst, "worseThanLasBy10Percent": len(behind_las), "worseThanLasAt": behind_las})
    lines = [f"Average JCT ÷ srtf-oracle's over {len(names)} points (Philly: every non-overlapping {WINDOW:,} s window at "
             f"{args.philly_nodes} nodes; Helios at {args.helios_nodes} nodes and with its VCs apart). "
             f"`python3 scripts/sim_robustness.py`, {datetime.date.today()}.", "",
             "| policy | geo. mean | median | worst (point) | points > 1.10 × las |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['geometricMean']:.3f} | {r['median']:.3f} | {r['worst']:.2f} ({r['worstPoint']}) | "
                     f"{r['worseThanLasBy10Percent']} of {r['points']} |")
    if failed:
        lines += ["", "Points without a result: " + "; ".join(f"{n}: {e}" for n, e in failed.items())]
    lines += ["", "Per point (ratio to srtf-oracle):", "", "| point | " + " | ".join(ratios) + " |", "|---" * (len(ratios) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{ratios[p][n]:.2f}" if n in ratios[p] else "-" for p in ratios) + " |")
    text = "\n".join(lines) + "\n"
    open(os.path.join(args.out, "robustness.md"), "w").write(text)
    json.dump({"summary": rows, "averageJCT": jct, "failed": failed}, open(os.path.join(args.out, "robustness.json"), "w"), indent=1)
    open(os.path.join(args.out, "robustness.svg"), "w").write(svg(names, ratios, list(ratios)))
    print(text)


if __name__ == "__main__":
    main()
