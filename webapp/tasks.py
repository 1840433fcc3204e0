"""Demo tasks for the web front end and ``make run`` (``redisq up --demo``, or
``REDISQ_APP=webapp.tasks:app``): never the web app's default."""

from __future__ import annotations

import time

from redisq import App, current_job

app = App()  # REDISQ_URL / REDIS_URL, else the embedded server


@app.task(name="demo.add")
def add(a: float, b: float) -> float:
    """The classic demo: add two numbers in the background."""
    return a + b


@app.task(name="demo.slow_count", timeout_s=120)
def slow_count(n: int = 10, step_s: float = 0.2) -> int:
    """Count to ``n`` slowly, reporting progress (watch the dashboard's progress bar)."""
    for i in range(n):
        time.sleep(step_s)
        current_job().progress((i + 1) / n, f"step {i + 1} of {n}")
    return n


@app.task(name="demo.bulk_update", unique_by="project_id", timeout_s=600)
def bulk_update(project_id: int, rows: int = 1000) -> dict:
    """A stand-in for "update a million rows": one per project at a time."""
    done = 0
    for chunk in range(0, rows, max(rows // 10, 1)):
        time.sleep(0.05)
        done = min(rows, chunk + max(rows // 10, 1))
        current_job().progress(done / rows, f"{done}/{rows} rows")
    return {"project_id": project_id, "rows": done}


@app.task(name="demo.fail", retries=1, retry_backoff_s=0.5)
def fail(reason: str = "demo failure") -> None:
    """Always fails: after its retry it lands in the dead letters (the dashboard's "recent
    failures", and "retry dead" brings it back)."""
    raise RuntimeError(reason)


COUNT_KEY = "demo:count"


@app.task(name="demo.count")
def count(key: str = COUNT_KEY) -> int:
    """Count this job's runs in the hash ``key`` (field: the job id). The load test checks
    that every accepted job is there exactly once. ``key`` is ``demo:count`` or under
    ``demo:count:``: anyone who may enqueue names it, and it must not reach other hashes
    (redisq's own, like ``redisq:periodic``, or the application's)."""
    if not isinstance(key, str) or not (key == COUNT_KEY or key.startswith(COUNT_KEY + ":")):
        raise ValueError(f"demo.count counts in {COUNT_KEY!r} or {COUNT_KEY}:<name>, not {key!r}")
    return int(app.client.hincrby(key, current_job().id, 1))


@app.periodic(every_s=60, name="demo.minutely")
def minutely() -> float:
    """A periodic job (``redisq up`` runs the scheduler in its prodcons worker): the
    dashboard's "scheduled" panel shows its next run."""
    return time.time()


@app.subscriber("events")
def on_event(message: object) -> None:
    """Every pubsub worker gets every message of the 'events' channel."""
    app.client.incr("demo:events")
