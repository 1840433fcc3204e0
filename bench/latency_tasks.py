"""The task of ``bench/latency.py``, and (with ``BENCH_LATENCY_TRACE=1``) the timestamps of each
job's way through the worker: blocking move answered, start mark sent and answered, handed to
a pool thread, pool thread running (a claimed wait, redisq/broker/waits.py, has no start mark,
and its job runs on the thread that waited: those steps then read as the move's end). Loaded
by the worker (``--app bench.latency_tasks:app``)
and by the producer; ``REDIS_URL`` is required (the benchmark's own server).
"""

import os
import time

import redis

from redisq import App

app = App(os.environ["REDIS_URL"])
r = redis.Redis.from_url(os.environ["REDIS_URL"])
STEPS = ("moved", "mark_sent", "marked", "submitted", "running")
_at: dict[str, float] = {}


def _trace() -> None:
    """Wrap the idle path's steps to note when each ended (monotonic; one job at a time)."""
    from redisq.backend.records import Records
    from redisq.broker.waits import Waits
    from redisq.worker.pool import Pool
    from redisq.worker.prodcons import ProdconsWorker

    def wrap(cls, name, before=None, after=None):
        real = getattr(cls, name)

        def step(*a, **k):
            if before:
                _at[before] = time.monotonic()
            out = real(*a, **k)
            if after:
                _at[after] = time.monotonic()
            return out
        setattr(cls, name, step)

    wrap(Waits, "move", after="moved")
    wrap(Records, "start", before="mark_sent", after="marked")
    wrap(Pool, "submit", before="submitted")
    wrap(ProdconsWorker, "_run", before="running")


if os.environ.get("BENCH_LATENCY_TRACE"):
    _trace()


@app.task(name="bench.stamp", queue="default")
def stamp(sent):
    now = time.monotonic()
    r.rpush("lat", repr(now - sent))
    if "moved" in _at:  # the idle path (a job taken with a settle skips the move and mark)
        # (A claimed wait has no start step: mark_sent and marked are the move's end.)
        moved = _at["moved"]
        r.rpush("lat:steps", " ".join(repr(_at.get(k, moved) - sent) for k in STEPS))
        _at.clear()
