"""redisq tasks for bench/compare.py: the same work as bench/peer_tasks/peer_*.py.

The worker is run as

    REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m redisq worker \\
        --app bench.redisq_tasks:app --mode prodcons --queues default --concurrency 8 \\
        --url redis://127.0.0.1:PORT/0 --log-level WARNING

from the repository root. ``REDIS_URL`` is required (the benchmark's own server; never a
default, so that nothing here talks to a machine's Redis by accident).
"""

import os
import sys
import time
from pathlib import Path

import redis

from redisq import App

sys.path.insert(0, str(Path(__file__).resolve().parent / "peer_tasks"))
import lightcount

URL = os.environ["REDIS_URL"]

app = App(URL)
r = redis.Redis.from_url(URL)


@app.task(name="bench.light", queue="default")
def light():
    lightcount.light()


@app.task(name="bench.noop", queue="default")
def noop():
    r.incr("counter")


@app.task(name="bench.stamp", queue="default")
def stamp(sent):
    r.rpush("lat", repr(time.monotonic() - sent))
