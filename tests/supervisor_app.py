"""Tasks for the supervisor tests (imported by worker subprocesses as tests.supervisor_app:app):
each one records which process ran it."""

from __future__ import annotations

import os
import time

from redisq import App

app = App(os.environ.get("REDIS_URL"))


@app.task(name="s.mark", retries=0)
def mark(n: int) -> int:
    """Counts its run and the process that ran it."""
    pipe = app.client.pipeline(transaction=False)
    pipe.hincrby("runs", str(n), 1)
    pipe.hincrby("by_pid", str(os.getpid()), 1)
    pipe.execute()
    return n


@app.task(name="s.hold", retries=0, timeout_s=60)
def hold(n: int) -> int:
    """Says which process started it, then runs until the test sets the key 'release'."""
    app.client.hset("started_by", str(n), os.getpid())
    app.client.hincrby("starts", str(n), 1)
    deadline = time.monotonic() + 30
    while not app.client.exists("release") and time.monotonic() < deadline:
        time.sleep(0.02)
    app.client.hincrby("runs", str(n), 1)
    return n


if os.environ.get("SUPERVISOR_TEST_CRASH"):
    @app.on_startup
    def crash(worker: object) -> None:
        raise RuntimeError("this worker process cannot start")
