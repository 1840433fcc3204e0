"""Workflow overhead: a 1,000-member group (and chord) beside plain ``task.map()`` of the same
calls, per member.

    .venv/bin/python bench/workflows.py [--n 1000] [--runs 5] [--concurrency 8]   # ~20 s

A private redis-server on a free loopback port (AOF, appendfsync everysec), one in-process
worker (a thread, ``--concurrency`` job threads) kept running across runs. Each run queues ``n``
no-op jobs and waits until the last one is recorded:

  map      task.map(range(n))                                  until n more succeeded
  group    group(task.s(i) for i in range(n)).delay()           until the group is complete
  chord    group(...).then(collect.s()).delay()                  until the callback succeeded

Runs alternate (order rotating) and each figure is the median. Printed: the producer's time
(queueing), end-to-end time, both per member, the group's overhead per member over map(), and
the Redis memory a complete group's state keeps per member.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from redisq import App, config, group
from redisq.backend import keys
from redisq.backend.embedded import RedisServer, free_port
from redisq.worker.prodcons import Worker


def succeeded(app: App) -> int:
    return int(app.client.hget(keys.stats("default"), "succeeded") or 0)


def wait(cond: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        time.sleep(0.005)  # a slow poll: the worker shares this process (and its GIL)


def run_map(app: App, n: int) -> tuple[float, float]:
    before = succeeded(app)
    t0 = time.perf_counter()
    app.tasks["b.noop"].map(range(n))
    queued = time.perf_counter() - t0
    wait(lambda: succeeded(app) >= before + n)
    return queued, time.perf_counter() - t0


def run_group(app: App, n: int, chord: bool) -> tuple[float, float]:
    noop, collect = app.tasks["b.noop"], app.tasks["b.collect"]
    t0 = time.perf_counter()
    g = group(noop.s(i) for i in range(n))
    job = g.then(collect.s()).delay() if chord else g.delay()
    queued = time.perf_counter() - t0
    if job.callback is not None:
        cb = job.callback
        wait(lambda: cb.status == "succeeded")
    else:
        wait(lambda: job.progress().get("fired") is not None)
    return queued, time.perf_counter() - t0


def state_bytes(app: App, n: int) -> float:
    """MEMORY USAGE of a complete group's state + results, per member."""
    noop = app.tasks["b.noop"]
    job = group(noop.s(i) for i in range(n)).delay()
    wait(lambda: job.progress().get("fired") is not None)
    c = app.client
    used = (c.memory_usage(keys.wf_state(job.queue, job.id), samples=0) or 0) + \
        (c.memory_usage(keys.wf_results(job.queue, job.id), samples=0) or 0)
    return used / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="redisq-bench-wf-"))
    server = RedisServer(tmp / "redis", port=free_port(), appendfsync="everysec").start()
    app = App(server.url)
    app.task(name="b.noop")(lambda i: i)
    app.task(name="b.collect")(lambda results: len(results))
    settings = config.load({"concurrency": opts.concurrency, "block_timeout_s": 0.5}, {})
    worker = Worker(app, settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        run_map(app, 200)  # warm-up: scripts loaded, connections open
        run_group(app, 200, True)
        contenders: dict[str, Callable[[], tuple[float, float]]] = {
            "map": lambda: run_map(app, opts.n),
            "group": lambda: run_group(app, opts.n, False),
            "chord": lambda: run_group(app, opts.n, True)}
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
        names = list(contenders)
        for i in range(opts.runs):
            for name in names[i % 3:] + names[:i % 3]:
                got[name].append(contenders[name]())
        med = {k: (statistics.median(q for q, _ in v), statistics.median(t for _, t in v))
               for k, v in got.items()}
        n = opts.n
        print(f"{n} members, {opts.runs} runs (median), worker concurrency {opts.concurrency}")
        print(f"{'':8}{'queueing µs/member':>20}{'end-to-end µs/member':>22}{'vs map':>9}")
        for name, (q, t) in med.items():
            print(f"{name:8}{q / n * 1e6:>20.1f}{t / n * 1e6:>22.1f}"
                  f"{t / med['map'][1]:>8.2f}x")
        for name in ("group", "chord"):
            extra = (med[name][1] - med["map"][1]) / n * 1e6
            print(f"{name} overhead over map(): {extra:.1f} µs per member end to end")
        print(f"group state kept in Redis: {state_bytes(app, n):.0f} bytes per member")
    finally:
        worker.stop()
        thread.join(10)
        app.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
