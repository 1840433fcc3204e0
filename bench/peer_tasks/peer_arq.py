"""arq functions for bench/peers.py (worker: arq peer_arq.WorkerSettings, 10 ms poll)."""
import os
import time

import lightcount
from arq.connections import RedisSettings


async def light(ctx):
    lightcount.light()


async def noop(ctx):
    await ctx["redis"].incr("counter")


async def stamp(ctx, sent):
    await ctx["redis"].rpush("lat", repr(time.monotonic() - sent))


class WorkerSettings:
    functions = [light, noop, stamp]
    redis_settings = RedisSettings.from_dsn(os.environ["REDIS_URL"])
    poll_delay = 0.01
    max_jobs = 10  # arq's default
