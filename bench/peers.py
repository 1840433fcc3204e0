"""Peer job queues on Redis, measured the same three ways: Huey, Dramatiq, SAQ, arq, Celery, RQ.

    bash bench/setup_peers.sh                      # once
    bench/.venv-peers/bin/python bench/peers.py    # ~5 minutes; writes bench/results/peers.json

Options: ``--only huey,rq``, ``--reps 1`` (default 3), ``--scale 0.5`` (fewer jobs),
``--out PATH``. Each library gets its own fresh redis-server on a free loopback port (AOF,
appendfsync everysec) and runs in its own child process (so the libraries' global state never
meets). Every library's jobs do the same work: ``noop`` INCRs a counter, ``stamp(sent)`` RPUSHes
``time.monotonic() - sent`` (enqueue → start) to a list.

Per repetition, after FLUSHALL:

enqueue/s   N no-op jobs enqueued one by one from this process, the way the library's users
            enqueue (``task()``, ``.send()``, ``.delay()``, ``enqueue``, ``enqueue_job``).
drain/s     then ONE worker process is started as the library is normally run (see WORKERS)
            and the time from the counter's first to its N-th INCR gives (N - 1) / t; worker
            start-up is excluded.
p50/p99 ms  then, with that worker idle, enqueue → task start latency: one ``stamp`` job at a
            time, each sent 5-15 ms (random) after the previous one started, so the worker is
            always idle when it arrives (closed loop: no queueing counted).

Rates are the median of the repetitions; latency percentiles pool every repetition's samples.
This module is also the harness for redisq's own row: ``bench/compare.py`` (project venv)
imports :func:`measure` and :class:`Adapter` and runs them with its redisq adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASKS = HERE / "peer_tasks"
RESULTS = HERE / "results"
LAT_N = 200


# -- the harness -----------------------------------------------------------------------------
class Adapter:
    """How one library enqueues and how its worker is started."""

    name = "?"
    drain_n = 5000          # jobs drained per repetition
    cwd: Path = TASKS       # the worker's working directory (its task module is importable)
    worker_label = ""       # how the worker is run, for the table

    def setup(self, url: str) -> None:
        """Import the task module (``$REDIS_URL`` is set) and make producer connections."""

    def enqueue_noop(self) -> None:
        raise NotImplementedError

    def enqueue_light(self) -> None:
        raise NotImplementedError

    def enqueue_stamp(self, sent: float) -> None:
        raise NotImplementedError

    def worker_cmd(self, url: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start_worker(adapter: Adapter, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": url,
           "PYTHONPATH": os.pathsep.join([str(adapter.cwd), os.environ.get("PYTHONPATH", "")])}
    log = open(RESULTS / f"worker-{adapter.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(adapter.worker_cmd(url), cwd=adapter.cwd, env=env,
                            stdout=log, stderr=log, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_counter(r: redis.Redis, n: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + timeout_s
    while int(r.get("counter") or 0) < n:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} (see {RESULTS}/worker-*.log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"counter {int(r.get('counter') or 0)} < {n} after {timeout_s} s")
        time.sleep(0.002)  # a light poll: it must not load the server or the CPUs
    return time.perf_counter()


def enqueue_many(adapter: Adapter, kind: str, n: int) -> float:
    """Enqueue ``n`` jobs of ``kind`` (incr or light) one by one; returns jobs/s."""
    fn = adapter.enqueue_noop if kind == "incr" else adapter.enqueue_light
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def drain(r: redis.Redis, kind: str, n: int, proc: subprocess.Popen[bytes]) -> float:
    """Jobs/s of the worker ``proc`` over ``n`` queued jobs of ``kind``: for the INCR task the
    time from the counter's first INCR to its N-th (worker start-up excluded); for the light
    task the first and last job's times as the jobs themselves took them (lightcount.py)."""
    wait_counter(r, 1, 60, proc)
    t0 = time.perf_counter()
    t1 = wait_counter(r, n, max(120.0, n / 10), proc)
    if kind == "incr":
        return (n - 1) / (t1 - t0)
    first = min(float(v) for v in r.hvals("light:first"))
    last = max(float(v) for v in r.hvals("light:last"))
    return (n - 1) / (last - first)


def latency(adapter: Adapter, r: redis.Redis, lat_n: int, spaced: bool) -> list[float]:
    """Enqueue → start latency (ms) of ``lat_n`` stamp jobs, one at a time (closed loop: each
    is sent once the previous one started): ``spaced`` 5-15 ms (random) apart, so the worker is
    idle when each arrives; else back to back (t0 taken before the enqueue call)."""
    lat: list[float] = []
    r.delete("lat")
    for _ in range(lat_n):
        if spaced:
            time.sleep(random.uniform(0.005, 0.015))
        adapter.enqueue_stamp(time.monotonic())
        got = r.blpop(["lat"], timeout=10)
        if got is None:
            raise TimeoutError("a stamp job did not start within 10 s")
        lat.append(float(got[1]) * 1000)
    return lat


def drain_once(adapter: Adapter, r: redis.Redis, url: str, kind: str, n: int) -> float:
    """A fresh queue of ``n`` jobs of ``kind``, drained by a fresh worker: jobs/s."""
    r.flushall()
    enqueue_many(adapter, kind, n)
    proc = start_worker(adapter, url)
    try:
        return drain(r, kind, n, proc)
    finally:
        stop_worker(proc)


def measure_once(adapter: Adapter, r: redis.Redis, url: str, n: int,
                 lat_n: int) -> dict[str, Any]:
    r.flushall()
    enqueue_rate = enqueue_many(adapter, "incr", n)
    proc = start_worker(adapter, url)
    try:
        drain_rate = drain(r, "incr", n, proc)
        spaced = latency(adapter, r, lat_n, spaced=True)
        b2b = latency(adapter, r, lat_n, spaced=False)
    finally:
        stop_worker(proc)
    light_rate = drain_once(adapter, r, url, "light", n)
    return {"enqueue_per_s": enqueue_rate, "drain_per_s": drain_rate,
            "drain_light_per_s": light_rate, "latency_ms": spaced, "latency_b2b_ms": b2b}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def measure(adapter: Adapter, url: str, reps: int = 3, scale: float = 1.0,
            lat_n: int = LAT_N) -> dict[str, Any]:
    """The measurements of one library against the (fresh) Redis at ``url``."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"worker-{adapter.name}.log").write_bytes(b"")  # this run's worker output only
    n = max(100, int(adapter.drain_n * scale))
    r = redis.Redis.from_url(url)
    adapter.setup(url)
    runs = []
    try:
        for _ in range(reps):
            runs.append(measure_once(adapter, r, url, n, lat_n))
    finally:
        adapter.close()
        r.flushall()
    lat = [x for run in runs for x in run["latency_ms"]]
    b2b = [x for run in runs for x in run["latency_b2b_ms"]]
    return {
        "library": adapter.name,
        "worker": adapter.worker_label,
        "redis_py": redis.__version__,
        "jobs": n,
        "reps": reps,
        "enqueue_per_s": round(statistics.median(x["enqueue_per_s"] for x in runs)),
        "drain_per_s": round(statistics.median(x["drain_per_s"] for x in runs)),
        "drain_light_per_s": round(statistics.median(x["drain_light_per_s"] for x in runs)),
        "latency_p50_ms": round(pct(lat, 0.50), 3),
        "latency_p99_ms": round(pct(lat, 0.99), 3),
        "latency_b2b_p50_ms": round(pct(b2b, 0.50), 3),
        "latency_b2b_p99_ms": round(pct(b2b, 0.99), 3),
        "latency_samples": len(lat),
        "runs": [{"enqueue_per_s": round(x["enqueue_per_s"]), "drain_per_s": round(x["drain_per_s"]),
                  "drain_light_per_s": round(x["drain_light_per_s"]),
                  "latency_p50_ms": round(pct(x["latency_ms"], 0.5), 3)} for x in runs],
    }


# -- the peers -------------------------------------------------------------------------------
class Huey(Adapter):
    name, drain_n, worker_label = "huey", 5000, "huey_consumer -w 4 -k thread"

    def setup(self, url: str) -> None:
        import peer_huey
        self.m = peer_huey

    def enqueue_noop(self) -> None:
        self.m.noop()

    def enqueue_light(self) -> None:
        self.m.light()

    def enqueue_stamp(self, sent: float) -> None:
        self.m.stamp(sent)

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("huey_consumer"), "peer_huey.huey", "-w", "4", "-k", "thread", "-q"]


class Dramatiq(Adapter):
    name, drain_n, worker_label = "dramatiq", 5000, "dramatiq -p 1 -t 8"

    def setup(self, url: str) -> None:
        import peer_dramatiq
        self.m = peer_dramatiq

    def enqueue_noop(self) -> None:
        self.m.noop.send()

    def enqueue_light(self) -> None:
        self.m.light.send()

    def enqueue_stamp(self, sent: float) -> None:
        self.m.stamp.send(sent)

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("dramatiq"), "peer_dramatiq", "-p", "1", "-t", "8"]


class Saq(Adapter):
    name, drain_n, worker_label = "saq", 3000, "saq, concurrency 10"

    def setup(self, url: str) -> None:
        import peer_saq
        self.m = peer_saq
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.m.queue.connect())

    def enqueue_noop(self) -> None:
        self.loop.run_until_complete(self.m.queue.enqueue("noop"))

    def enqueue_light(self) -> None:
        self.loop.run_until_complete(self.m.queue.enqueue("light"))

    def enqueue_stamp(self, sent: float) -> None:
        self.loop.run_until_complete(self.m.queue.enqueue("stamp", sent=sent))

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("saq"), "peer_saq.settings", "--quiet"]

    def close(self) -> None:
        self.loop.run_until_complete(self.m.queue.disconnect())
        self.loop.close()


class Arq(Adapter):
    name, drain_n, worker_label = "arq", 3000, "arq, poll 10 ms, max_jobs 10"

    def setup(self, url: str) -> None:
        import peer_arq
        from arq import create_pool
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(peer_arq.WorkerSettings.redis_settings))

    def enqueue_noop(self) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("noop"))

    def enqueue_light(self) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("light"))

    def enqueue_stamp(self, sent: float) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("stamp", sent))

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("arq"), "peer_arq.WorkerSettings"]

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


class Celery(Adapter):
    name, drain_n, worker_label = "celery", 2000, "celery worker -P solo"

    def setup(self, url: str) -> None:
        import peer_celery
        self.m = peer_celery

    def enqueue_noop(self) -> None:
        self.m.noop.delay()

    def enqueue_light(self) -> None:
        self.m.light.delay()

    def enqueue_stamp(self, sent: float) -> None:
        self.m.stamp.delay(sent)

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("celery"), "-A", "peer_celery", "worker", "-P", "solo", "--loglevel", "WARNING"]


class Rq(Adapter):
    name, drain_n, worker_label = "rq", 1000, "rq worker -w SimpleWorker"

    def setup(self, url: str) -> None:
        import peer_rq
        self.m = peer_rq

    def enqueue_noop(self) -> None:
        self.m.queue.enqueue(self.m.noop)

    def enqueue_light(self) -> None:
        self.m.queue.enqueue(self.m.light)

    def enqueue_stamp(self, sent: float) -> None:
        self.m.queue.enqueue(self.m.stamp, sent)

    def worker_cmd(self, url: str) -> list[str]:
        return [_bin("rq"), "worker", "-w", "rq.worker.SimpleWorker", "-q", "--url", url, "default"]


PEERS: dict[str, type[Adapter]] = {a.name: a for a in (Huey, Dramatiq, Saq, Arq, Celery, Rq)}


# -- servers ---------------------------------------------------------------------------------
def fresh_server() -> Any:
    """A fresh redis-server on a free loopback port (redisq.server's, imported from the
    checkout; only redis-py is needed, which the peers' venv has)."""
    sys.path.insert(0, str(ROOT))
    from redisq.backend.embedded import RedisServer, free_port

    return RedisServer(tempfile.mkdtemp(prefix="redisq-bench-peer-"), port=free_port(),
                       appendfsync="everysec").start()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("redis", "hiredis", "huey", "dramatiq", "saq", "arq", "celery", "rq"):
        with contextlib.suppress(PackageNotFoundError):
            out[p] = version(p)
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'library':<10}{'worker':<32}{'jobs':>6}{'enqueue/s':>11}{'INCR/s':>9}{'light/s':>9}"
          f"{'p50 ms':>8}{'p99 ms':>8}{'b2b p50':>9}{'b2b p99':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['library']:<10}{'':<32} {row['error']}")
            continue
        if row.get("pending"):
            print(f"{row['library']:<10}{'':<32} pending: {row['pending']}")
            continue
        print(f"{row['library']:<10}{row['worker']:<32}{row['jobs']:>6}{row['enqueue_per_s']:>11,}"
              f"{row['drain_per_s']:>9,}{row.get('drain_light_per_s', 0):>9,}"
              f"{row['latency_p50_ms']:>8.2f}{row['latency_p99_ms']:>8.2f}"
              f"{row.get('latency_b2b_p50_ms', 0):>9.2f}{row.get('latency_b2b_p99_ms', 0):>9.2f}")


def run_child(name: str, url: str, reps: int, scale: float) -> None:
    """In a child process: measure one library and print its JSON on the last line."""
    os.environ["REDIS_URL"] = url
    sys.path.insert(0, str(TASKS))
    print(json.dumps(measure(PEERS[name](), url, reps, scale)))


def main() -> None:
    ap = argparse.ArgumentParser(description="Measure the peer job queues (see the docstring).")
    ap.add_argument("--only", help="comma-separated libraries (default: all)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every job count")
    ap.add_argument("--out", default=str(RESULTS / "peers.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        run_child(opts.child, opts.url, opts.reps, opts.scale)
        return

    names = opts.only.split(",") if opts.only else list(PEERS)
    RESULTS.mkdir(exist_ok=True)
    rows = []
    started = time.monotonic()
    for name in names:
        server = fresh_server()
        t = time.monotonic()
        try:
            res = subprocess.run([sys.executable, __file__, "--child", name, "--url", server.url,
                                  "--reps", str(opts.reps), "--scale", str(opts.scale)],
                                 capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            res = None
        finally:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
        if res is not None and res.returncode == 0:
            row = json.loads(res.stdout.strip().splitlines()[-1])
        else:
            why = "timed out" if res is None else (res.stderr.strip().splitlines() or ["?"])[-1]
            row = {"library": name, "error": why}
        row["seconds"] = round(time.monotonic() - t, 1)
        rows.append(row)
        print(f"  {name}: done in {row['seconds']} s", file=sys.stderr)
    out = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
           "versions": versions(), "cpus": os.cpu_count(), "reps": opts.reps,
           "seconds": round(time.monotonic() - started, 1), "results": rows}
    Path(opts.out).write_text(json.dumps(out, indent=2) + "\n")
    print_table(rows)
    print(f"\nwritten to {opts.out} ({out['seconds']} s)")


if __name__ == "__main__":
    main()
