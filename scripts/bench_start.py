#!/usr/bin/env python3
"""FastGPU job-start benchmarks, shaped like ../shared/peers/slurm/bench.py so that the figures
of both systems mean the same thing.

Needs a running FastGPU (scripts/bench-start.sh starts one: a release server and 16 agents with
8 simulated GPUs each). Every job is 1 GPU running
    sh -c 'date +%s.%N > DIR/PREFIX_$FASTGPU_JOB_ID.out; exec sleep HOLD'
so its first line is the moment its process really ran (same host clock as the client).

  trickle N --interval S   one job every S seconds into an idle cluster; submit -> process running
  submit  N --parallel P   N jobs from P clients as fast as they go; sustained starts per second
  burst   N                N jobs at once into an idle cluster; first submit -> last process running

Submissions are HTTP POSTs (one keep-alive connection per client) with t0 taken just before each.
"""
import argparse, http.client, json, math, os, statistics, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def stats(xs, scale=1.0, nd=3):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": round(min(xs), nd), "p50": round(pct(xs, 50), nd), "p90": round(pct(xs, 90), nd),
            "p99": round(pct(xs, 99), nd), "max": round(max(xs), nd), "mean": round(statistics.fmean(xs), nd)}


class Client:
    def __init__(self, url, token):
        u = urlparse(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status} {payload[:200]!r}")
                return json.loads(payload) if payload else None
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise

    def submit(self, directory, prefix, hold, cli=None):
        script = f"date +%s.%N > {directory}/{prefix}_$FASTGPU_JOB_ID.out; exec sleep {hold}"
        if cli:
            # As a person submits: the `fastgpu` binary, as Slurm's figures use sbatch.
            env = dict(os.environ, FASTGPU_SERVER=f"http://{self.host}:{self.port}", FASTGPU_TOKEN=self.token)
            t0 = time.time()
            done = subprocess.run([cli, "run", "-d", "--gpus", "1", "--retry", "0", "--", "sh", "-c", script], env=env,
                                  capture_output=True, text=True, check=True)
            return t0, time.time(), int(done.stdout.strip())
        t0 = time.time()
        job = self.call("POST", "/v1/jobs", {"project": "default", "command": ["sh", "-c", script], "resources": {"gpus": 1},
                                            "maxAttempts": 1})
        return t0, time.time(), job["id"]


def stamp(path):
    try:
        with open(path) as f:
            return float(f.readline().split()[0])
    except Exception:
        return None


def wait_until(predicate, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def active(client):
    page = client.call("GET", "/v1/jobs?state=pending,running&limit=1")
    return len(page["items"])


def cpu_seconds(pids):
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def exp_trickle(a, client):
    recs = []
    first = time.time()
    for i in range(a.n):
        delay = first + i * a.interval - time.time()
        if delay > 0:
            time.sleep(delay)
        recs.append(client.submit(a.dir, "trk", a.hold, cli=a.cli))
    paths = {j: f"{a.dir}/trk_{j}.out" for (_, _, j) in recs}
    ok = wait_until(lambda: all(stamp(p) for p in paths.values()), a.timeout)
    e2e = [stamp(paths[j]) - t0 for (t0, _, j) in recs if stamp(paths[j])]
    return {"experiment": "trickle", "jobs": a.n, "interval_s": a.interval, "all_running": ok,
            "method": ("one `fastgpu run -d` every interval into an idle cluster; t0 = just before the command starts" if a.cli else
                       "one POST /v1/jobs every interval into an idle cluster; t0 = just before the POST"),
            "submit_call_ms": stats([t1 - t0 for (t0, t1, _) in recs], 1000),
            "submit_to_job_running_s": stats(e2e)}


def exp_submit(a, client, url, token):
    clients = [Client(url, token) for _ in range(a.parallel)]
    lock = threading.Lock()
    recs = []
    counter = iter(range(a.n))

    def worker(c):
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            r = c.submit(a.dir, "sub", a.hold)
            with lock:
                recs.append(r)

    start = time.time()
    with ThreadPoolExecutor(a.parallel) as pool:
        list(pool.map(worker, clients))
    submitted = time.time()
    drained = wait_until(lambda: active(client) == 0, a.timeout, step=0.5)
    stamps = sorted(s for s in (stamp(f"{a.dir}/sub_{j}.out") for (_, _, j) in recs) if s)
    summary = {"experiment": "submit", "jobs": a.n, "parallel_clients": a.parallel, "hold_s": a.hold,
               "method": "N POST /v1/jobs from P keep-alive clients as fast as they go; starts = the jobs' own first line",
               "submit_wall_s": round(submitted - start, 3), "submissions_per_s": round(a.n / (submitted - start), 1),
               "submit_call_ms": stats([t1 - t0 for (t0, t1, _) in recs], 1000), "drained": drained,
               "jobs_started_seen": len(stamps)}
    if len(stamps) > 1:
        summary["first_to_last_start_s"] = round(stamps[-1] - stamps[0], 2)
        summary["sustained_starts_per_s"] = round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1)
        buckets = {}
        for s in stamps:
            buckets[int(s)] = buckets.get(int(s), 0) + 1
        summary["max_starts_in_one_second"] = max(buckets.values())
        # With every GPU busy for `hold` seconds per job, no scheduler can start more than this.
        summary["capacity_bound_starts_per_s"] = round(a.capacity / a.hold, 1)
        summary["ideal_drain_s"] = math.ceil(a.n / a.capacity) * a.hold
        summary["first_submit_to_last_start_s"] = round(stamps[-1] - start, 2)
    return summary


def exp_burst(a, client, url, token):
    # One connection per thread: an http.client connection must not be shared between threads.
    local = threading.local()

    def submit(_):
        if not hasattr(local, "client"):
            local.client = Client(url, token)
        return local.client.submit(a.dir, "bst", a.hold)

    start = time.time()
    with ThreadPoolExecutor(8) as pool:
        recs = list(pool.map(submit, range(a.n)))
    paths = [f"{a.dir}/bst_{j}.out" for (_, _, j) in recs]
    ok = wait_until(lambda: all(stamp(p) for p in paths), a.timeout)
    e2e = [stamp(p) - t0 for (t0, _, j), p in zip(recs, paths) if stamp(p)]
    last = max((stamp(p) for p in paths if stamp(p)), default=start)
    return {"experiment": "burst", "jobs": a.n, "all_running": ok,
            "method": "N POSTs from 8 clients at once into an idle cluster; each job's t0 = just before its POST",
            "submit_to_job_running_s": stats(e2e), "first_submit_to_all_running_s": round(last - start, 3),
            "jobs_running_per_s": round(a.n / max(last - start, 1e-9), 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("exp", choices=["trickle", "submit", "burst"])
    p.add_argument("n", type=int)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--dir", required=True, help="where jobs write their start stamps")
    p.add_argument("--out", required=True)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--hold", type=int, default=1)
    p.add_argument("--capacity", type=int, default=128)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--cli", help="submit with this fastgpu binary (trickle) instead of HTTP")
    p.add_argument("--pids", default="", help="comma-separated pids whose CPU time to report")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    client = Client(a.url, a.token)
    wait_until(lambda: active(client) == 0, 120, step=0.5)
    pids = [int(x) for x in a.pids.split(",") if x]
    cpu0, wall0 = cpu_seconds(pids), time.time()
    if a.exp == "trickle":
        summary = exp_trickle(a, client)
    elif a.exp == "submit":
        summary = exp_submit(a, client, a.url, a.token)
    else:
        summary = exp_burst(a, client, a.url, a.token)
    if pids:
        wall = time.time() - wall0
        summary["cpu"] = {"fastgpu_processes_cpu_s": round(cpu_seconds(pids) - cpu0, 2), "wall_s": round(wall, 2)}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
