"""Throughput as worker processes are added (1, 2, 4) on this machine.

    .venv/bin/python bench/scaling.py [--jobs 20000] [--processes 1,2,4] [--concurrency 8]
                                      [--repeat 1]

For each process count: a fresh Redis on a loopback port, ``--jobs`` no-op jobs queued first
(``enqueue_many``), then N ``redisq worker`` processes (``--app scaling:app``, this file). The
clock starts when the N-th worker has registered (so slow process starts do not count) and
stops when the queue's ``succeeded`` counter reaches the total; jobs done before the start are
left out of the rate. Prints jobs/s (the best of ``--repeat`` runs: on a shared machine the
best run is the one least disturbed) and the ratio to one process.

Expect the curve to flatten once the cores are full: every worker process is one Python
interpreter (one core at most, the GIL), and Redis itself needs a core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redisq import App
from redisq.backend.embedded import RedisServer, free_port
from redisq.backend.registry import Registry

HERE = Path(__file__).resolve().parent
QUEUE = "scaling"

app = App(os.environ.get("REDIS_URL"))


@app.task(name="scaling.noop", queue=QUEUE)
def noop() -> None:
    """Nothing: what is measured is the queue's own cost per job."""


def succeeded(server: RedisServer) -> int:
    raw = server.client().hget(f"redisq:{{{QUEUE}}}:stats", "succeeded")
    return int(raw or 0)


def drain(processes: int, jobs: int, concurrency: int) -> float:
    """Jobs/s of ``processes`` worker processes on a queue of ``jobs`` no-op jobs."""
    server = RedisServer(tempfile.mkdtemp(prefix="bench-scale-"), port=free_port()).start()
    producer = App(server.url)
    producer.task(name="scaling.noop", queue=QUEUE)(lambda: None)
    producer.enqueue_many("scaling.noop", [((), {})] * jobs)
    env = {**os.environ, "REDIS_URL": server.url}
    cmd = [sys.executable, "-m", "redisq", "worker", "--app", "scaling:app", "--queues", QUEUE,
           "--concurrency", str(concurrency), "--log-level", "WARNING"]
    workers = [subprocess.Popen(cmd, cwd=HERE, env=env) for _ in range(processes)]
    registry = Registry(server.client())
    try:
        while len(registry.workers()) < processes:
            time.sleep(0.002)
        start, before = time.perf_counter(), succeeded(server)
        while succeeded(server) < jobs:
            time.sleep(0.005)
        return (jobs - before) / (time.perf_counter() - start)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        producer.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    opts = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {opts.jobs} no-op jobs, concurrency {opts.concurrency} "
          "per process")
    print(f"{'processes':>9}{'jobs/s':>10}{'x one':>8}")
    base = None
    for n in (int(p) for p in opts.processes.split(",")):
        rate = max(drain(n, opts.jobs, opts.concurrency) for _ in range(opts.repeat))
        base = base or rate
        print(f"{n:>9}{rate:>10.0f}{rate / base:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
