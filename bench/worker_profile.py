"""Where a worker's per-job time goes: cProfile in every thread of an in-process worker.

    .venv/bin/python bench/worker_profile.py [--jobs 20000] [--concurrency 8] [--log-level INFO]
                                             [--task light|incr] [--top 30]

Queues ``--jobs`` jobs of the light task (no Redis call) or the INCR task on a private
redis-server, then drains them with a :class:`~redisq.worker.prodcons.ProdconsWorker` whose
threads (main loop, pool, recorder, supervisor) each run under their own cProfile; prints the
drain rate (slowed by the profiler: read the split, not the rate) and the merged top functions
by own time. Log lines go to /dev/null through the daemons' handler (``redisq.ops.logs``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redisq import App, config
from redisq.backend.embedded import RedisServer, free_port
from redisq.ops import logs
from redisq.worker.prodcons import ProdconsWorker

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_real_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    prof = cProfile.Profile()
    with _lock:
        _profiles.append(prof)
    prof.runcall(_real_run, self)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--task", choices=("light", "incr"), default="light")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--no-profile", action="store_true",
                    help="no profiler: the drain rate and this process's CPU µs per job")
    opts = ap.parse_args()
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-worker-profile-"), port=free_port(),
                         appendfsync="everysec").start()
    try:
        logs.setup(opts.log_level)
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115
        app = App(server.url)
        r = redis.Redis.from_url(server.url)
        done = threading.Semaphore(0)

        @app.task(name="p.light")
        def light() -> None:
            done.release()

        @app.task(name="p.incr")
        def incr() -> None:
            r.incr("counter")
            done.release()

        task = light if opts.task == "light" else incr
        task.map([((), {})] * opts.jobs)
        settings = config.load({"concurrency": opts.concurrency, "log_level": opts.log_level}, {})
        if not opts.no_profile:
            threading.Thread.run = _profiled_run  # type: ignore[method-assign]
        worker = ProdconsWorker(app, settings)
        main_prof = cProfile.Profile()
        run = worker.run if opts.no_profile else lambda: main_prof.runcall(worker.run)
        runner = threading.Thread(target=run, daemon=True)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        runner.start()
        for _ in range(opts.jobs):
            done.acquire()
        elapsed = time.perf_counter() - t0
        cpu_us = (time.process_time() - cpu0) / opts.jobs * 1e6
        worker.stop()
        runner.join(10)
        threading.Thread.run = _real_run  # type: ignore[method-assign]
        print(f"{opts.jobs} {opts.task} jobs, concurrency {opts.concurrency}, log level "
              f"{opts.log_level}: {opts.jobs / elapsed:,.0f} jobs/s"
              + (f", {cpu_us:.1f} µs of CPU per job (this process: the worker and the task)"
                 if opts.no_profile else " under the profiler"))
        if opts.no_profile:
            return
        out = io.StringIO()
        stats = pstats.Stats(main_prof, stream=out)
        for prof in _profiles:
            stats.add(prof)
        stats.sort_stats("tottime").print_stats(opts.top)
        print(out.getvalue())
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
