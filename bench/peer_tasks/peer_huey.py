"""Huey tasks for bench/peers.py (worker: huey_consumer peer_huey.huey -w 4 -k thread)."""
import os
import time

import lightcount
import redis
from huey import RedisHuey

r = redis.Redis.from_url(os.environ["REDIS_URL"])
huey = RedisHuey("bench", url=os.environ["REDIS_URL"])


@huey.task()
def light():
    lightcount.light()


@huey.task()
def noop():
    r.incr("counter")


@huey.task()
def stamp(sent):
    r.rpush("lat", repr(time.monotonic() - sent))
