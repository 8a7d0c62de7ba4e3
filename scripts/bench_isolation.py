#!/usr/bin/env python3
"""Start latency of one job as a host process, an isolated host process and a container.

Submits JOBS jobs one after another (each waits for the last to finish) to a running server with
one ready agent, each `sh -c 'cat /proc/uptime'`, and measures submit -> the job's first
instruction: the job prints the kernel's uptime (the same clock inside a container: there is no
time namespace), converted to wall time with the offset read here at the start. Resolution 10 ms.

  bench_isolation.py --url URL --token TOKEN --mode NAME [--image IMAGE] [--network MODE] [--jobs 50]
prints one JSON line: {"mode", "jobs", "p50_ms", "p90_ms", "p99_ms", "mean_ms"}.
"""
import argparse, http.client, json, statistics, sys, time
from urllib.parse import urlparse


def uptime_offset():
    # wall = uptime + offset; read both as close together as possible, best of 20.
    best = None
    for _ in range(20):
        before = time.time()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        after = time.time()
        candidate = ((before + after) / 2 - up, after - before)
        if best is None or candidate[1] < best[1]:
            best = candidate
    return best[0]


def call(url, token, method, path, body=None, timeout=120):
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
    return data


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--image")
    parser.add_argument("--network")
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    offset = uptime_offset()
    latencies = []
    for _ in range(args.jobs):
        body = {"project": "default", "command": ["sh", "-c", "cat /proc/uptime"], "resources": {"gpus": 1}}
        if args.image:
            body["image"] = args.image
        if args.network:
            body["network"] = args.network
        submitted = time.time()
        job = json.loads(call(args.url, args.token, "POST", "/v1/jobs", body))["id"]
        lines = call(args.url, args.token, "GET", f"/v1/jobs/{job}/logs?follow=true").decode().splitlines()
        texts = [json.loads(line).get("text", "") for line in lines if line.strip()]
        started = next((t.split()[0] for t in texts if t.strip()), None)
        if started is None:
            raise SystemExit(f"job {job} printed nothing: {lines}")
        latencies.append((float(started) + offset - submitted) * 1000)
    print(json.dumps({"mode": args.mode, "jobs": len(latencies), "p50_ms": round(pct(latencies, 50), 1),
                      "p90_ms": round(pct(latencies, 90), 1), "p99_ms": round(pct(latencies, 99), 1),
                      "mean_ms": round(statistics.mean(latencies), 1)}))


if __name__ == "__main__":
    sys.exit(main())
