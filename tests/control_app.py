"""Tasks for the control tests (abort, limits, pause, weighted queues); imported by worker
subprocesses as tests.control_app:app."""

from __future__ import annotations

import asyncio
import os
import time

from redisq import App, current_job

app = App(os.environ.get("REDIS_URL"))


@app.task(name="c.spin", retries=3, timeout_s=None)
def spin() -> None:
    """A pure-Python CPU loop that never ends by itself."""
    app.client.set("spin:started", "1")
    n = 0
    while True:
        n += 1


@app.task(name="c.nap", retries=3, timeout_s=None)
def nap() -> str:
    """One long time.sleep (a blocking C call)."""
    app.client.set("nap:started", "1")
    time.sleep(60)
    app.client.set("nap:woke", "1")  # must never run after an abort
    return "slept"


@app.task(name="c.polite", timeout_s=None)
def polite() -> str:
    """Stops by itself once asked to (checks current_job().aborted)."""
    app.client.set("polite:started", "1")
    while not current_job().aborted:
        time.sleep(0.01)
    app.client.set("polite:saw", "1")
    return "stopped"


@app.task(name="c.anap", timeout_s=None)
async def anap() -> str:
    app.client.set("anap:started", "1")
    await asyncio.sleep(60)
    return "slept"


@app.task(name="c.rated", rate_limit="50/s", retries=0)
def rated(i: int) -> None:
    app.client.rpush("rated:starts", repr(time.time()))


@app.task(name="c.pair", concurrency_limit=2, retries=0)
def pair(i: int, hold_s: float = 0.05) -> None:
    """Records how many run at once (INCR on entry, DECR on exit, the max kept)."""
    now = app.client.incr("pair:running")
    app.client.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
                    "redis.call('SET', KEYS[1], ARGV[1]) end", 1, "pair:max", now)
    time.sleep(hold_s)
    app.client.decr("pair:running")
    app.client.rpush("pair:done", i)


@app.task(name="c.solo", concurrency_limit=1, retries=0, timeout_s=None)
def solo(tag: str) -> None:
    app.client.rpush("solo:starts", f"{tag}:{os.getpid()}")
    if tag == "hog" and app.client.set("hog:once", "1", nx=True):
        time.sleep(60)  # holds the one slot until its worker is killed (a re-run returns)


@app.task(name="c.mark", retries=0)
def mark(queue: str) -> None:
    app.client.rpush("mark:order", queue)
