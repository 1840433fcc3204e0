"""The light task's body, shared by every library's task module (redisq's too): no Redis call
in the job itself, so what is measured is the queue's own per-job cost.

A job only counts itself in its process. A daemon thread per worker process (started by the
process's first job, so forked workers get their own) writes that count, and the
``CLOCK_MONOTONIC`` times of the process's first and latest job, to Redis every 5 ms in one
pipeline: ``counter`` (INCRBY), ``light:first`` and ``light:last`` (hashes by pid). The harness
waits for ``counter`` to reach N and takes drain/s = (N - 1) / (max(last) - min(first)): the
same clock for every library and every process, and the ~200 pipelines/s it costs are the same
for every library too.
"""

import os
import threading
import time

import redis

FLUSH_S = 0.005

_lock = threading.Lock()
_state = {"pid": 0, "count": 0, "first": 0.0, "last": 0.0}


def light() -> None:
    now = time.monotonic()
    with _lock:
        if _state["pid"] != os.getpid():  # this process's first job (or a fork's)
            _state.update(pid=os.getpid(), count=0, first=now)
            threading.Thread(target=_flush_forever, daemon=True, name="bench-light").start()
        _state["count"] += 1
        _state["last"] = now


def _flush_forever() -> None:
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    pid, sent = os.getpid(), 0
    while True:
        time.sleep(FLUSH_S)
        with _lock:
            count, first, last = _state["count"], _state["first"], _state["last"]
        if count == sent:
            continue
        pipe = r.pipeline(transaction=False)
        pipe.hset("light:first", str(pid), repr(first))
        pipe.hset("light:last", str(pid), repr(last))
        pipe.incrby("counter", count - sent)
        pipe.execute()
        sent = count
