"""Issue 16's job indexes at scale, and what they cost the hot path.

    git archive <commit before the indexes> | (mkdir /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python bench/job_index.py --baseline /tmp/base   # ~3 min on a quiet 2-core VM
    .venv/bin/python bench/job_index.py --jobs 20000 --skip-drain   # a quick look

1. **Caps at scale.** 1,000 queues' worth of index keys (each queue: succeeded, dead and
   cancelled indexes, records behind them, an hour of series), then ``--jobs`` (200,000) jobs
   through a real worker (burst mode, 8 threads; one in 20 fails), with ``index_max`` =
   ``--cap``. Checks: every index of every queue at or under its cap; the dashboard's snapshot
   (``webapp.stream.dashboard_snapshot``, what ``/api/snapshot`` and every SSE snapshot cost)
   under 50 ms; a filtered search (failed, one task, an error substring, last hour, every
   queue) under 200 ms. Times are medians of 9.
2. **Hot path** (``--skip-drain`` to skip): jobs drained per second by one burst worker
   (concurrency 8, no-op task), this tree (indexes on) against ``--baseline`` (a checkout of
   the code before the indexes), alternating, a fresh redis-server each run, median of
   ``--reps``. Target: within 5 %. Wall-clock rates on a shared VM swing by ±30 % between
   runs, so the CPU each job costs is printed too (the worker process's, and Redis's
   ``used_cpu_*``): steadier, and what the ratio comes from on a quiet machine.

Its own redis-server on a free loopback port; never touches another Redis.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from redisq.backend.embedded import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]

DRAIN = r"""
import sys, time
from redisq import App, config
from redisq.worker.prodcons import Worker
import logging; logging.getLogger("redisq").setLevel(logging.ERROR)
url, n = sys.argv[1], int(sys.argv[2])
app = App(url)
@app.task(name="b.noop")
def noop(i): return None
app.enqueue_many("b.noop", [((i,), {}) for i in range(n)])
w = Worker(app, config.load({"burst": True, "concurrency": 8, "log_level": "WARNING"}, {}))
def used(info): return info["used_cpu_user"] + info["used_cpu_sys"]
before = used(app.client.info("cpu"))
t, p = time.perf_counter(), time.process_time()
w.run()
wall, cpu = time.perf_counter() - t, time.process_time() - p
print(n / wall, cpu / n * 1e6, (used(app.client.info("cpu")) - before) / n * 1e6)
"""


def median_ms(fn, runs: int = 9) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def fill_queues(client: redis.Redis, queues: int, per_index: int) -> None:
    """Index keys, records and series for ``queues`` idle queues (bulk, pipelined)."""
    from redisq.backend import index, keys

    now = time.time()
    names = [f"tenant-{i:04d}" for i in range(queues)]
    for start in range(0, queues, 50):
        pipe = client.pipeline(transaction=False)
        for q in names[start:start + 50]:
            for st, n in (("succeeded", per_index), ("dead", per_index // 5),
                          ("cancelled", per_index // 10)):
                ids = {f"{q}-{st}-{j:06d}": int((now - j) * 1000) for j in range(n)}
                pipe.zadd(keys.status_index(q, st), ids)
                for jid in ids:
                    fields = {"status": st, "task": "tenant.sync", "finished_at": now}
                    if st == "dead":
                        fields.update(error_type="TimeoutError", error_message="upstream slow")
                    pipe.hset(keys.job(q, jid), mapping=fields)
            for m in range(int(now) // 60 - 59, int(now) // 60 + 1):
                pipe.hset(keys.series(q, m), mapping={"p:0": 3, "f:0": 1, "l:0.01": 3, "d": 2})
        pipe.execute()
    index.touch(client, names)


def run_jobs(url: str, n: int, cap: int) -> float:
    from redisq import App, config
    from redisq.worker.prodcons import Worker

    logging.getLogger("redisq").setLevel(logging.ERROR)  # a line per failure is not the point
    app = App(url, events=False)
    app.index_max = cap

    @app.task(name="bench.work", retries=0)
    def work(i: int) -> int:
        if i % 20 == 0:
            raise TimeoutError(f"upstream slow for item {i}")
        return i

    for start in range(0, n, 10_000):
        app.enqueue_many("bench.work", [((i,), {}) for i in range(start, min(start + 10_000, n))],
                         queue=f"hot-{start // 10_000 % 4}")
    worker = Worker(app, config.load({"burst": True, "concurrency": 8, "log_level": "ERROR",
                                      "queues": "hot-0,hot-1,hot-2,hot-3"}, {}))
    t = time.perf_counter()
    worker.run()
    return n / (time.perf_counter() - t)


def caps_and_latency(url: str, args: argparse.Namespace) -> bool:
    from redisq import App
    from redisq.backend import jobindex
    from redisq.ops import jobs
    from webapp import create_app, state
    from webapp.stream import dashboard_snapshot

    client = redis.Redis.from_url(url)
    t = time.perf_counter()
    fill_queues(client, args.queues, args.per_index)
    print(f"filled {args.queues} queues' index keys in {time.perf_counter() - t:.1f} s")
    rate = run_jobs(url, args.jobs, args.cap)
    print(f"ran {args.jobs} jobs (1 in 20 failing) at {rate:,.0f} jobs/s, index_max={args.cap}")
    app = App(url)
    sizes = jobindex.index_sizes(client, app.queues())
    worst = max(n for per in sizes.values() for n in per.values())
    over = [(q, s, n) for q, per in sizes.items() for s, n in per.items() if n > args.cap]
    print(f"largest index: {worst} ids (cap {args.cap}); over the cap: {over or 'none'}")
    web = create_app({"REDISQ_APP": app, "TESTING": True})
    st = state(web)
    with web.app_context():
        snap_ms = median_ms(lambda: dashboard_snapshot(st))
    query = jobs.Query(status="failed", task="bench.work", error="item 1", since=time.time() - 3600)
    search_ms = median_ms(lambda: jobs.search(app, query))
    found = len(jobs.search(app, query)["jobs"])
    one_q = median_ms(lambda: jobs.search(app, jobs.Query(status="failed", queue="hot-0",
                                                          error="item 1")))
    print(f"{len(sizes)} queues: dashboard snapshot {snap_ms:.1f} ms (target < 50); filtered "
          f"search over every queue {search_ms:.1f} ms, {found} found (target < 200); "
          f"on one queue {one_q:.1f} ms")
    st.hub.close()
    return not over and snap_ms < 50 and search_ms < 200


def drain(baseline: str, n: int, reps: int) -> bool:
    rates: dict[str, list[float]] = {"indexes": [], "baseline": []}
    cpu: dict[str, list[tuple[float, float]]] = {"indexes": [], "baseline": []}
    trees = {"indexes": str(ROOT), "baseline": baseline}
    for rep in range(reps):
        for name in (["indexes", "baseline"] if rep % 2 == 0 else ["baseline", "indexes"]):
            server = RedisServer(tempfile.mkdtemp(prefix="redisq-idx-drain-"), port=free_port(),
                                 appendfsync="everysec").start()
            try:
                env = {**os.environ, "PYTHONPATH": trees[name]}
                out = subprocess.run([sys.executable, "-c", DRAIN, server.url, str(n)], env=env,
                                     capture_output=True, text=True, check=True, cwd=trees[name])
                rate, worker_us, redis_us = map(float, out.stdout.split()[-3:])
                rates[name].append(rate)
                cpu[name].append((worker_us, redis_us))
            finally:
                server.stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["indexes"] / med["baseline"]
    print(f"drain, {n} no-op jobs, one burst worker (8 threads), median of {reps}: "
          f"indexes {med['indexes']:,.0f}/s, baseline ({baseline}) {med['baseline']:,.0f}/s, "
          f"ratio {ratio:.3f} (target >= 0.95); runs: {rates}")
    for name, pairs in cpu.items():
        print(f"  {name}: CPU per job, worker {statistics.median(w for w, _ in pairs):.1f} µs, "
              f"redis {statistics.median(r for _, r in pairs):.1f} µs")
    return ratio >= 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--per-index", type=int, default=100)
    parser.add_argument("--cap", type=int, default=10_000)
    parser.add_argument("--baseline", help="a checkout of the code before the indexes")
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-drain", action="store_true")
    args = parser.parse_args()
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-idx-bench-"), port=free_port(),
                         appendfsync="everysec").start()
    try:
        ok = caps_and_latency(server.url, args)
    finally:
        server.stop()
    if not args.skip_drain:
        if not args.baseline:
            parser.error("--baseline DIR (or --skip-drain)")
        ok = drain(args.baseline, args.drain_jobs, args.reps) and ok
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
