"""Dramatiq actors for bench/peers.py (worker: dramatiq peer_dramatiq -p 1 -t 8)."""
import os
import time

import dramatiq
import lightcount
import redis
from dramatiq.brokers.redis import RedisBroker

r = redis.Redis.from_url(os.environ["REDIS_URL"])
dramatiq.set_broker(RedisBroker(url=os.environ["REDIS_URL"]))


@dramatiq.actor
def light():
    lightcount.light()


@dramatiq.actor
def noop():
    r.incr("counter")


@dramatiq.actor
def stamp(sent):
    r.rpush("lat", repr(time.monotonic() - sent))
