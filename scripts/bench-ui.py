#!/usr/bin/env python3
"""The web dashboard's pages at 10,000 jobs: time to answer and size of each reply.

Starts `fastgpu server` (release build by default) and 4 agents with 8 simulated H100s each,
submits 10,000 one-GPU jobs in 3 projects (32 run, the rest wait, with estimated starts), signs
in through a one-time link (`POST /v1/ui/sessions`), and asks each page 30 times on one
keep-alive connection. Prints p50, p95 and max time and the reply size per page; the goal is
every page in 300 ms and no reply over 1 MB.

    python3 scripts/bench-ui.py [--fastgpu .build/release/fastgpu] [--jobs 10000] [--json FILE]
"""
import argparse, http.client, json, os, re, shutil, statistics, subprocess, sys, tempfile, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fastgpu", default=".build/release/fastgpu")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fastgpu-bench-ui-")
    procs = []
    try:
        server = subprocess.Popen([args.fastgpu, "server", "--data-dir", f"{work}/server", "--port", "0", "--rate-limit", "0",
                                   "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(server)
        port = None
        for line in server.stdout:
            m = re.search(r"server listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            sys.exit("the server did not start")
        admin = open(f"{work}/server/admin-token").read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def call(method, path, body=None, token=admin, headers=None):
            h = {"Content-Type": "application/json"}
            if token:
                h["Authorization"] = f"Bearer {token}"
            h.update(headers or {})
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()

        join = json.loads(call("POST", "/v1/tokens", {"name": "bench", "kind": "join"})[2])["token"]
        for i in range(4):
            procs.append(subprocess.Popen([args.fastgpu, "agent", "--server", f"http://127.0.0.1:{port}", "--join-token", join,
                                           "--data-dir", f"{work}/agent-{i}", "--name", f"gpu-{i}", "--simulate-gpus", "8xH100-80GB",
                                           "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name in ("vision", "speech"):
            call("POST", "/v1/projects", {"name": name})
        while len(json.loads(call("GET", "/v1/nodes")[2])["items"]) < 4:
            time.sleep(0.2)
        t0 = time.time()
        projects = ["default", "vision", "speech"]
        for i in range(args.jobs):
            status, _, body = call("POST", "/v1/jobs", {"project": projects[i % 3], "name": f"train-{i}", "command": ["sleep", "3600"],
                                                        "resources": {"gpus": 1}, "maxRuntimeSeconds": 7200})
            if status not in (200, 201):
                sys.exit(f"submission {i}: {status} {body[:200]}")
        submitted = time.time() - t0
        time.sleep(3)  # a scheduling pass or two: placements and estimates
        link = json.loads(call("POST", "/v1/ui/sessions")[2])["path"]
        status, headers, _ = call("GET", link, token=None)
        cookie = next(v for k, v in headers if k.lower() == "set-cookie").split(";")[0]
        running = json.loads(call("GET", "/v1/jobs?state=running&limit=1")[2])["items"][0]["id"]
        pending = json.loads(call("GET", "/v1/jobs?state=pending&limit=1")[2])["items"][0]["id"]
        pages = ["/ui", "/ui/jobs", "/ui/jobs?state=pending", "/ui/jobs?project=speech&after=5000", f"/ui/jobs/{running}",
                 f"/ui/jobs/{pending}", "/ui/nodes", "/ui/projects", f"/ui/jobs/{running}/logs"]
        rows = []
        for page in pages:
            times, size = [], 0
            for _ in range(args.rounds):
                t = time.perf_counter()
                status, _, body = call("GET", page, token=None, headers={"Cookie": cookie})
                times.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    sys.exit(f"{page}: {status} {body[:300]}")
                size = max(size, len(body))
            times.sort()
            rows.append({"page": page, "p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
                         "max_ms": round(times[-1], 1), "bytes": size})
        print(f"{args.jobs} jobs submitted in {submitted:.1f} s; 4 nodes x 8 simulated H100; {args.rounds} requests per page")
        print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>9}")
        for r in rows:
            print(f"{r['page']:44} {r['p50_ms']:8} {r['p95_ms']:8} {r['max_ms']:8} {r['bytes']:9}")
        worst = max(r["max_ms"] for r in rows)
        largest = max(r["bytes"] for r in rows)
        print(f"slowest reply {worst} ms (goal 300), largest {largest} bytes (goal 1,000,000)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"jobs": args.jobs, "rounds": args.rounds, "pages": rows, "slowest_ms": worst, "largest_bytes": largest}, f, indent=2)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
