"""Celery tasks for bench/peers.py (worker: celery -A peer_celery worker -P solo)."""
import os
import time

import lightcount
import redis
from celery import Celery

r = redis.Redis.from_url(os.environ["REDIS_URL"])
app = Celery("bench", broker=os.environ["REDIS_URL"])  # no result backend: results not kept


@app.task
def light():
    lightcount.light()


@app.task
def noop():
    r.incr("counter")


@app.task
def stamp(sent):
    r.rpush("lat", repr(time.monotonic() - sent))
