"""SAQ functions for bench/peers.py (worker: saq peer_saq.settings, concurrency 10)."""
import os
import time

import lightcount
import redis.asyncio as aioredis
from saq import Queue

queue = Queue.from_url(os.environ["REDIS_URL"])
r = aioredis.Redis.from_url(os.environ["REDIS_URL"])


async def light(ctx):
    lightcount.light()


async def noop(ctx):
    await r.incr("counter")


async def stamp(ctx, *, sent):
    await r.rpush("lat", repr(time.monotonic() - sent))


settings = {"queue": queue, "functions": [light, noop, stamp], "concurrency": 10}
