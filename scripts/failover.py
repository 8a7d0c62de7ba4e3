#!/usr/bin/env python3
"""Failover of the control plane, measured.

Three `fastgpu server --store postgres://...` on one PostgreSQL, agents with simulated GPUs,
clients submitting with idempotency keys as fast as they can. Then, again and again, the leader
is killed with SIGKILL (or, with --partition, cut off from the database by a proxy that stops
forwarding) and started again as a follower. At the end the database and the API are checked:

  lost        acknowledged submissions whose job the cluster does not have
  duplicates  jobs created twice for one idempotency key
  twice       a job with two allocations alive at once (an allocation's end after the next one's start)
  run again   a job with a second allocation at all (the failover made it run again)
  fencing     a commit of an older leader's epoch after a newer leader's first commit

and the time from each kill to the new leader's first placement is reported (p50/p99), with the
takeover time (kill to lease taken) and, for a partition, the time the cut-off leader took to stop.

    scripts/failover.py --kills 20                  # the figures of the README
    scripts/failover.py --kills 3 --agents 4        # what scripts/test.sh runs
    scripts/failover.py --partitions 3 --kills 0    # the partition test

Needs a built fastgpu (--fastgpu, default .build/release or .build/debug), psql, and a
PostgreSQL (--postgres URL; default: scripts/postgres-test-server.sh starts one on loopback).
Exits non-zero when a check fails.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    out = subprocess.run(["psql", url, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"psql: {out.stderr.strip()}")
    return [line.split("|") for line in out.stdout.splitlines() if line]


def http(method, url, token=None, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Proxy:
    """A TCP proxy from a local port to PostgreSQL that can stop forwarding (a partition: the
    connections stay open, nothing crosses) and start again."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open = threading.Event()
        self.open.set()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.loop.run_forever()

    # The database drops a connection whose client stays silent for about this long (the
    # store's keepalives: 2 s idle, then 2 probes 1 s apart); a partition lasting longer ends the
    # database's side of every connection across it, as a real one would.
    KEEPALIVE_DEADLINE = 4.0

    async def _pipe(self, reader, writer, upstream):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while not self.open.is_set():
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        except Exception:
            pass
        finally:
            # A partitioned link carries nothing, not even the close.
            while not self.open.is_set():
                await asyncio.sleep(0.05)
            try:
                writer.close()
            except Exception:
                pass

    async def _reaper(self, up_writer):
        """While cut off, the database side of the link goes once the keepalives give up."""
        while not up_writer.is_closing():
            if not self.open.is_set():
                cut = time.time()
                while not self.open.is_set() and time.time() - cut < self.KEEPALIVE_DEADLINE:
                    await asyncio.sleep(0.05)
                if not self.open.is_set():
                    up_writer.transport.abort()
                    return
            await asyncio.sleep(0.05)

    async def _client(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except Exception:
            writer.close()
            return
        reaper = asyncio.ensure_future(self._reaper(up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False))
        reaper.cancel()


class Cluster:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.db_url = args.postgres_db
        self.data = os.path.join(work, "cp-data")
        os.makedirs(self.data, exist_ok=True)
        self.ports = [free_port() for _ in range(args.control_planes)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.procs = [None] * args.control_planes
        self.starts = [0] * args.control_planes
        self.proxies = []
        if args.partitions:
            host, port = args.postgres_host
            self.proxies = [Proxy(host, port) for _ in range(args.control_planes)]
        self.agents = []

    def store_url(self, i):
        if self.proxies:
            user, database = self.args.postgres_user, self.args.postgres_database
            return f"postgres://{user}@127.0.0.1:{self.proxies[i].port}/{database}"
        return self.db_url

    def start_cp(self, i):
        self.starts[i] += 1
        log = open(os.path.join(self.work, f"cp{i}.{self.starts[i]}.log"), "w")
        self.procs[i] = subprocess.Popen(
            [self.args.fastgpu, "server", "--store", self.store_url(i), "--port", str(self.ports[i]), "--data-dir", self.data,
             "--lease-ttl", str(self.args.lease_ttl), "--log-level", "notice", "--rate-limit", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def leader(self):
        try:
            rows = psql(self.db_url, "SELECT url, epoch FROM leader_lease WHERE id = 1 AND expires_at > clock_timestamp()")
        except RuntimeError:
            return None, None  # not migrated yet
        if not rows:
            return None, None
        url, epoch = rows[0]
        return (self.urls.index(url) if url in self.urls else None), int(epoch)

    def wait_leader(self, above=0, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            i, epoch = self.leader()
            if i is not None and epoch > above:
                return i, epoch
            time.sleep(0.05)
        raise RuntimeError(f"no leader with an epoch over {above} within {timeout} s")

    def stop_all(self):
        for proc in self.agents + self.procs:
            if proc and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Clients:
    """Threads that submit 1-GPU jobs in a closed loop; each submission is retried with its key,
    moving through the server list, until it is acknowledged."""

    def __init__(self, urls, token, count, command):
        self.urls = urls
        self.token = token
        self.command = command
        self.acked = {}
        self.lock = threading.Lock()
        self.running = True
        self.retries = 0
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(count)]
        for thread in self.threads:
            thread.start()

    def _loop(self, n):
        current = n % len(self.urls)
        serial = 0
        while self.running:
            serial += 1
            key = f"failover-{n}-{serial}"
            body = {"project": "default", "name": key, "command": self.command, "resources": {"gpus": 1}}
            began = time.time()
            while True:
                try:
                    status, job = http("POST", self.urls[current] + "/v1/jobs", self.token, body, {"Idempotency-Key": key}, timeout=15)
                except Exception:
                    status, job = None, None
                if status in (200, 201) and job:
                    with self.lock:
                        self.acked[key] = job["id"]
                        self.slowest = max(self.slowest, time.time() - began)
                    break
                if status is not None and 400 <= status < 500 and status != 429:
                    raise RuntimeError(f"submission {key} refused: HTTP {status}")
                with self.lock:
                    self.retries += 1
                current = (current + 1) % len(self.urls)
                time.sleep(0.05)

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fastgpu")
    parser.add_argument("--postgres", help="postgres://USER@HOST:PORT/DB of a server to create a database on (default: start the test server)")
    parser.add_argument("--control-planes", type=int, default=3)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--gpus", default="8xH100-80GB", help="each agent's simulated GPUs")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=0)
    parser.add_argument("--lease-ttl", type=int, default=3)
    parser.add_argument("--between", type=float, nargs=2, default=[3.0, 6.0], help="seconds between failures (uniform)")
    parser.add_argument("--command", default="sleep 2")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    random.seed(args.seed)
    if not args.fastgpu:
        for kind in ("release", "debug"):
            path = os.path.join(ROOT, ".build", kind, "fastgpu")
            if os.path.exists(path):
                args.fastgpu = path
                break
    if not args.fastgpu:
        sys.exit("no fastgpu binary: run swift build (or pass --fastgpu)")
    if not args.postgres:
        args.postgres = subprocess.run([os.path.join(ROOT, "scripts", "postgres-test-server.sh")], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1]
    admin = args.postgres
    base, _ = admin.rsplit("/", 1)
    database = f"fastgpu_failover_{int.from_bytes(os.urandom(4), 'big')}"
    psql(admin, f"CREATE DATABASE {database}")
    args.postgres_db = f"{base}/{database}"
    hostport = base.split("@", 1)[1]
    args.postgres_host = (hostport.split(":")[0], int(hostport.split(":")[1]) if ":" in hostport else 5432)
    args.postgres_user = base.split("://", 1)[1].split("@", 1)[0]
    args.postgres_database = database

    work = tempfile.mkdtemp(prefix="fastgpu-failover-")
    cluster = Cluster(args, work)
    failures = []
    figures = {"control_planes": args.control_planes, "agents": args.agents, "gpus_per_agent": args.gpus, "clients": args.clients,
               "lease_ttl_s": args.lease_ttl, "kills": [], "partitions": []}
    try:
        cluster.start_cp(0)
        cluster.wait_leader()
        for i in range(1, args.control_planes):
            cluster.start_cp(i)
        token_path = os.path.join(cluster.data, "admin-token")
        deadline = time.time() + 30
        while not os.path.exists(token_path) and time.time() < deadline:
            time.sleep(0.1)
        token = open(token_path).read().strip()
        status, created = http("POST", cluster.urls[0] + "/v1/tokens", token, {"name": "failover agents", "kind": "join"})
        if status not in (200, 201):
            raise RuntimeError(f"cannot create a join token: HTTP {status}")
        join = created["token"]
        for n in range(args.agents):
            # Each agent starts at a different control plane.
            order = cluster.urls[n % len(cluster.urls):] + cluster.urls[:n % len(cluster.urls)]
            log = open(os.path.join(work, f"agent{n}.log"), "w")
            cluster.agents.append(subprocess.Popen(
                [args.fastgpu, "agent", "--server", ",".join(order), "--join-token", join, "--simulate-gpus", args.gpus,
                 "--name", f"node{n:02d}", "--data-dir", os.path.join(work, f"agent{n}"), "--cpus", "64", "--memory-mib", "524288", "--no-cgroups", "--isolation", "off",
                 "--containers", "off", "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 120
        while time.time() < deadline:
            status, nodes = http("GET", cluster.urls[0] + "/v1/nodes", token)
            if status == 200 and len([n for n in nodes["items"] if n["state"] == "ready"]) == args.agents:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the agents did not all register")
        clients = Clients(cluster.urls, token, args.clients, args.command.split())
        cli_ok = cli_failed = 0
        time.sleep(random.uniform(*args.between))

        def first_placement(epoch, after_ms):
            deadline = time.time() + 60
            while time.time() < deadline:
                rows = psql(args.postgres_db, f"SELECT min(time) FROM event WHERE epoch >= {epoch} AND kind = 'placed' AND time >= {after_ms}")
                if rows and rows[0][0]:
                    return int(rows[0][0])
                time.sleep(0.05)
            return None

        for k in range(args.kills):
            leader, epoch = cluster.wait_leader()
            killed_at = time.time()
            os.killpg(cluster.procs[leader].pid, signal.SIGKILL)
            cluster.procs[leader].wait()
            cluster.start_cp(leader)
            new_leader, new_epoch = cluster.wait_leader(above=epoch)
            taken = psql(args.postgres_db, "SELECT extract(epoch FROM taken_at) FROM leader_lease")[0][0]
            placed = first_placement(new_epoch, int(killed_at * 1000))
            record = {"kill": k + 1, "epoch": epoch, "new_epoch": new_epoch, "takeover_s": round(float(taken) - killed_at, 3),
                      "first_placement_s": round(placed / 1000 - killed_at, 3) if placed else None}
            figures["kills"].append(record)
            # The CLI, given every control plane, keeps working.
            cli = subprocess.run([args.fastgpu, "jobs", "ls", "--server", ",".join(cluster.urls), "--token", token, "--state", "running"],
                                 capture_output=True, text=True, timeout=60)
            if cli.returncode == 0:
                cli_ok += 1
            else:
                cli_failed += 1
                failures.append(f"the CLI failed after kill {k + 1}: {cli.stderr.strip()[:200]}")
            print(f"kill {k + 1}: leader cp{leader} (epoch {epoch}) -> cp{new_leader} (epoch {new_epoch}); "
                  f"lease taken after {record['takeover_s']} s, first placement after {record['first_placement_s']} s", flush=True)
            time.sleep(random.uniform(*args.between))

        for p in range(args.partitions):
            leader, epoch = cluster.wait_leader()
            cut_at = time.time()
            cluster.proxies[leader].open.clear()
            proc = cluster.procs[leader]
            try:
                proc.wait(timeout=args.lease_ttl * 3 + 10)
                stopped_s = time.time() - cut_at
            except subprocess.TimeoutExpired:
                stopped_s = None
                failures.append(f"partition {p + 1}: the cut-off leader did not stop")
            new_leader, new_epoch = cluster.wait_leader(above=epoch)
            cluster.proxies[leader].open.set()
            last_old = psql(args.postgres_db, f"SELECT max(time) FROM event WHERE epoch = {epoch}")[0][0]
            last_old_s = (int(last_old) / 1000 - cut_at) if last_old else None
            placed = first_placement(new_epoch, int(cut_at * 1000))
            record = {"partition": p + 1, "epoch": epoch, "new_epoch": new_epoch,
                      "old_leader_stopped_s": round(stopped_s, 3) if stopped_s is not None else None,
                      "last_old_commit_after_cut_s": round(last_old_s, 3) if last_old_s is not None else None,
                      "first_placement_s": round(placed / 1000 - cut_at, 3) if placed else None}
            figures["partitions"].append(record)
            # It decides to stop within its lease (its watchdog: the lease less 250 ms); the
            # process being gone also takes the machine's time to run it, which a loaded 2-core
            # machine stretches: only a stop well past the lease fails the run (the figure says the rest).
            if stopped_s is not None and stopped_s > args.lease_ttl + 2.0:
                failures.append(f"partition {p + 1}: the cut-off leader stopped after {stopped_s:.2f} s, well over its {args.lease_ttl} s lease")
            if last_old_s is not None and last_old_s > args.lease_ttl:
                failures.append(f"partition {p + 1}: epoch {epoch} committed {last_old_s:.2f} s after the cut, over its lease")
            print(f"partition {p + 1}: leader cp{leader} (epoch {epoch}) stopped after {record['old_leader_stopped_s']} s; "
                  f"cp{new_leader} leads (epoch {new_epoch}); last old commit {record['last_old_commit_after_cut_s']} s after the cut; "
                  f"first placement after {record['first_placement_s']} s", flush=True)
            cluster.start_cp(leader)
            time.sleep(random.uniform(*args.between))

        clients.stop()
        leader, final_epoch = cluster.wait_leader()
        url = cluster.urls[leader]
        # Every acknowledged job finishes (agents kept working); then the books are checked.
        acked = dict(clients.acked)
        deadline = time.time() + 180
        unfinished = len(acked)
        while time.time() < deadline:
            rows = psql(args.postgres_db, "SELECT count(*) FROM job WHERE (doc::jsonb->>'state') NOT IN ('succeeded', 'failed', 'cancelled')")
            unfinished = int(rows[0][0])
            if unfinished == 0:
                break
            time.sleep(1)
        jobs = {}
        for job_id, name, state in psql(args.postgres_db, "SELECT id, doc::jsonb->>'name', doc::jsonb->>'state' FROM job"):
            jobs.setdefault(name, []).append((int(job_id), state))
        lost = [key for key, job_id in acked.items() if job_id not in [j for j, _ in jobs.get(key, [])]]
        duplicates = [key for key, found in jobs.items() if len(found) > 1]
        failed = [key for key, found in jobs.items() if any(state == "failed" for _, state in found)]
        twice = 0
        allocations = {}  # job -> [(start, end)]
        for job_id, started, ended in psql(args.postgres_db, """
                SELECT job_id, (doc::jsonb->>'startedAt')::bigint, (doc::jsonb->>'endedAt')::bigint FROM allocation ORDER BY job_id, id"""):
            allocations.setdefault(int(job_id), []).append((int(started), int(ended) if ended else None))
        for spans in allocations.values():
            spans.sort()
            for (s1, e1), (s2, _) in zip(spans, spans[1:]):
                if e1 is None or e1 > s2:
                    twice += 1
        # A job that ended once never runs again: an exit its agent could not report to a dying
        # leader is reported to the next one, not taken for a lost allocation.
        run_again = len([spans for spans in allocations.values() if len(spans) > 1])
        fencing = 0
        epochs = [int(r[0]) for r in psql(args.postgres_db, "SELECT DISTINCT epoch FROM event WHERE epoch IS NOT NULL ORDER BY 1")]
        for older, newer in zip(epochs, epochs[1:]):
            row = psql(args.postgres_db, f"""SELECT (SELECT max(sequence) FROM event WHERE epoch = {older}) > (SELECT min(sequence) FROM event WHERE epoch = {newer})""")
            if row[0][0] == "t":
                fencing += 1
        status, nodes = http("GET", url + "/v1/nodes", token)
        ready = len([n for n in nodes["items"] if n["state"] == "ready"]) if status == 200 else 0
        placements = [r["first_placement_s"] for r in figures["kills"] if r["first_placement_s"] is not None]
        takeovers = [r["takeover_s"] for r in figures["kills"]]
        figures.update({
            "acknowledged": len(acked), "jobs": sum(len(v) for v in jobs.values()), "lost": len(lost), "duplicates": len(duplicates),
            "failed_jobs": len(failed), "unfinished": unfinished, "allocations_running_twice": twice, "jobs_run_again": run_again,
            "fencing_violations": fencing,
            "submission_retries": clients.retries, "slowest_acknowledgement_s": round(clients.slowest, 2),
            "agents_ready_at_end": ready,
            # Leader changes nobody caused (a leader that could not renew in time on a loaded machine).
            "unplanned_leader_changes": final_epoch - 1 - args.kills - args.partitions, "cli_ok": cli_ok, "cli_failed": cli_failed,
            "first_placement_p50_s": percentile(placements, 50), "first_placement_p99_s": percentile(placements, 99),
            "first_placement_max_s": max(placements) if placements else None,
            "takeover_p50_s": percentile(takeovers, 50), "takeover_p99_s": percentile(takeovers, 99),
        })
        if lost: failures.append(f"{len(lost)} acknowledged jobs lost, e.g. {lost[:3]}")
        if duplicates: failures.append(f"{len(duplicates)} idempotency keys made two jobs, e.g. {duplicates[:3]}")
        if twice: failures.append(f"{twice} allocations ran while another of their job was alive")
        if run_again: failures.append(f"{run_again} jobs ran again after a failover (a lost allocation)")
        if failed: failures.append(f"{len(failed)} jobs failed")
        if fencing: failures.append(f"{fencing} epochs committed after their successor's first commit")
        if unfinished: failures.append(f"{unfinished} jobs did not finish after the failures stopped")
        if ready != args.agents: failures.append(f"{ready} of {args.agents} agents ready at the end")
        if args.kills and len(placements) < args.kills: failures.append(f"{args.kills - len(placements)} takeovers placed nothing within 60 s")
        print(json.dumps({k: v for k, v in figures.items() if k not in ("kills", "partitions")}, indent=1))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(figures, f, indent=1)
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        cluster.stop_all()
        if not args.keep and not failures:
            subprocess.run(["rm", "-rf", work])
        if args.keep:
            print(f"kept the database {database}", file=sys.stderr)
        else:
            try:
                psql(admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            except Exception:
                pass
    if failures:
        print("FAILED (logs in " + work + "):\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("failover: all checks passed")


if __name__ == "__main__":
    main()
