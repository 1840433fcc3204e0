"""Tasks for the poison fuzz test (imported by worker subprocesses as tests.poison_app:app)."""

from __future__ import annotations

import os
from typing import Any

from redisq import App, current_job

app = App(os.environ.get("REDIS_URL"))


@app.task(name="fz.take", retries=0)
def take(*args: Any, **kwargs: Any) -> int:
    """Takes any call; counts the job as run (retries=0: a failure is dead at once)."""
    app.client.hincrby("fz:ran", current_job().id, 1)
    return len(args) + len(kwargs)
