"""Tasks for the worker tests (imported by worker subprocesses as tests.worker_app:app)."""

from __future__ import annotations

import os
import time

from redisq import App, Retry

# A result TTL of its own: the worker command must keep it (only REDISQ_* settings override).
app = App(os.environ.get("REDIS_URL"), result_ttl_s=3600)


@app.task(name="t.record")
def record(n: int) -> int:
    app.client.hincrby("runs", str(n), 1)
    return n * 2


@app.task(name="t.block", retries=0, timeout_s=60)
def block(n: int) -> int:
    """Runs until the test sets the key 'release'."""
    app.client.hincrby("starts", str(n), 1)
    deadline = time.monotonic() + 30
    while not app.client.exists("release") and time.monotonic() < deadline:
        time.sleep(0.02)
    app.client.hincrby("runs", str(n), 1)
    return n


@app.task(name="t.sleep", retries=0)
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    app.client.incr("slept")
    return "done"


@app.task(name="t.poison", retries=2, retry_backoff_s=0.05)
def poison() -> None:
    raise ValueError("poisoned input")


@app.task(name="t.flaky", retries=3, retry_backoff_s=0.1)
def flaky(key: str) -> str:
    attempt = app.client.rpush(key, f"{time.time():.4f}")
    if attempt < 3:
        raise ConnectionError(f"transient failure #{attempt}")
    return "ok"


@app.task(name="t.later", retries=1)
def later(key: str) -> str:
    if app.client.incr(key) == 1:
        raise Retry(delay_s=0.3)
    return "ok"


@app.subscriber("events")
def on_event(message: dict) -> None:
    app.client.hincrby("events", message["kind"], 1)
