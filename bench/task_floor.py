"""The ceiling a queue cannot beat: the benchmark task's own work, with no queue at all.

    .venv/bin/python bench/task_floor.py [--jobs 20000] [--threads 1,4,8,16]
    bench/.venv-peers/bin/python bench/task_floor.py      # the peers' redis-py

compare.py's no-op task INCRs a counter through redis-py. This runs that INCR ``--jobs`` times
from N threads of one process against a private server (loopback, its own port) and prints
INCR/s: what one worker process could drain if the queue cost nothing. A drain target above
this figure cannot be met by any queue in one Python process.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import redis

from redisq.backend.embedded import RedisServer, free_port


def incr_rate(url: str, jobs: int, threads: int) -> float:
    r = redis.Redis.from_url(url)
    per = jobs // threads

    def work() -> None:
        for _ in range(per):
            r.incr("counter")

    ts = [threading.Thread(target=work) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--threads", default="1,4,8,16")
    opts = ap.parse_args()
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-task-floor-"), port=free_port()).start()
    try:
        print(f"redis-py {redis.__version__}; {opts.jobs} INCRs per row")
        for n in (int(x) for x in opts.threads.split(",")):
            print(f"{n:>3} thread(s): {incr_rate(server.url, opts.jobs, n):>9,.0f} INCR/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
