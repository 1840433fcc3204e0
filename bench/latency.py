"""Enqueue → start latency of one idle redisq worker, alone (the latency part of compare.py).

    .venv/bin/python bench/latency.py [--n 300] [--concurrency 8] [--rounds 2] [--trace]
                                      [--tree /tmp/lat-<sha>]

Starts a private redis-server (AOF everysec, as ``bench/peers.py``) and one worker
(``--app bench.latency_tasks:app``), then sends ``stamp`` jobs one at a time, each once the
previous one started: back to back, and spaced 5-15 ms apart (the worker idle when each comes),
``--rounds`` times each, alternating; prints p50/p99 in ms. ``--tree`` runs the redisq of
another checkout (e.g. ``git worktree add --detach /tmp/lat-<sha> <sha>``) in both the worker
and the producer, to compare commits. ``--trace`` also prints, for jobs that came through the
blocking move (the idle path), the median time since t0 at which each step ended.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def closed_loop(stamp, r, n: int, spaced: bool) -> list[float]:  # type: ignore[no-untyped-def]
    lat = []
    r.delete("lat")
    for _ in range(n):
        if spaced:
            time.sleep(random.uniform(0.005, 0.015))
        stamp.delay(time.monotonic())
        got = r.blpop(["lat"], timeout=10)
        if got is None:
            raise TimeoutError("a stamp job did not start within 10 s")
        lat.append(float(got[1]) * 1000)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--tree", default=str(ROOT), help="the redisq checkout to run")
    ap.add_argument("--trace", action="store_true")
    opts = ap.parse_args()
    tree = str(Path(opts.tree).resolve())
    port, data = free_port(), tempfile.mkdtemp(prefix="redisq-lat-")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--dir", data, "--appendonly", "yes", "--appendfsync", "everysec",
                               "--save", ""], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = url
    env = {**os.environ, "PYTHONPATH": f"{tree}:{ROOT}",
           **({"BENCH_LATENCY_TRACE": "1"} if opts.trace else {})}
    sys.path[:0] = [tree, str(ROOT)]
    import redis

    r = redis.Redis.from_url(url)
    worker = None
    try:
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        worker = subprocess.Popen(
            [sys.executable, "-m", "redisq", "worker", "--app", "bench.latency_tasks:app",
             "--mode", "prodcons", "--queues", "default", "--concurrency", str(opts.concurrency),
             "--url", url, "--log-level", opts.log_level], env=env,
            cwd=tree)  # (`-m` puts the working directory first on sys.path: the tree's redisq)
        import redisq
        from bench import latency_tasks

        assert redisq.__file__ is not None and redisq.__file__.startswith(tree), redisq.__file__
        closed_loop(latency_tasks.stamp, r, 50, spaced=False)  # warm-up (and worker start)
        r.delete("lat:steps")
        got: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(opts.rounds):
            for spaced in (False, True):
                got[spaced] += closed_loop(latency_tasks.stamp, r, opts.n, spaced)
        print(f"{tree} concurrency={opts.concurrency} log={opts.log_level}: back-to-back p50 "
              f"{pct(got[False], .5):.3f} p99 {pct(got[False], .99):.3f} ms; spaced p50 "
              f"{pct(got[True], .5):.3f} p99 {pct(got[True], .99):.3f} ms")
        steps = [[float(x) * 1000 for x in s.split()] for s in r.lrange("lat:steps", 0, -1)]
        if steps:
            medians = (statistics.median(c) for c in zip(*steps, strict=True))
            print(f"idle path ({len(steps)} jobs), median ms since t0 at the end of: " + ", ".join(
                f"{k} {m:.3f}" for k, m in zip(latency_tasks.STEPS, medians, strict=True)))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        server.terminate()
        server.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
