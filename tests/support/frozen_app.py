"""Tasks for the frozen-worker fault test (``tests.support.frozen_app:app``).

Each run notes, in Redis, that it started (and whether its own job record already said it was
finished: a start after the job succeeded elsewhere) and that it finished, so the test can tell
duplicate starts from outcomes written twice.
"""

from __future__ import annotations

import os
import time

from redisq import App, current_job
from redisq.model import TERMINAL

app = App(os.environ.get("REDIS_URL"))

STARTS, FINISHES, LATE = "frozen:starts", "frozen:finishes", "frozen:late"


@app.task(name="f.work", retries=0)
def work(n: int, sleep_s: float = 0.0) -> int:
    job = current_job()
    status = app.records.status(job.queue, job.id)
    pipe = app.client.pipeline(transaction=False)
    pipe.hincrby(STARTS, job.id, 1)
    if status in TERMINAL:  # this run began after the job had finished (on another worker)
        pipe.rpush(LATE, f"{job.id} {status} {os.getpid()}")
    pipe.execute()
    if sleep_s:
        time.sleep(sleep_s)
    app.client.hincrby(FINISHES, job.id, 1)
    return os.getpid()
