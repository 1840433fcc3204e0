"""RQ jobs for bench/peers.py (worker: rq worker -w rq.worker.SimpleWorker default)."""
import os
import time

import lightcount
import redis
from rq import Queue

r = redis.Redis.from_url(os.environ["REDIS_URL"])
queue = Queue("default", connection=redis.Redis.from_url(os.environ["REDIS_URL"]))


def light():
    lightcount.light()


def noop():
    r.incr("counter")


def stamp(sent):
    r.rpush("lat", repr(time.monotonic() - sent))
