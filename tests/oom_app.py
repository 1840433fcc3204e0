"""Tasks for the OOM fault test (imported by its worker as tests.oom_app:app)."""

from __future__ import annotations

import os
import time

from redisq import App

# The default result TTL (24 h): finished records must not keep Redis full.
app = App(os.environ.get("REDIS_URL"))


@app.task(name="oom.noop", retries=0)
def noop(blob: str) -> int:
    """Holds an 8 KiB argument; takes about a millisecond (slower than the flood)."""
    time.sleep(0.001)
    return len(blob)
