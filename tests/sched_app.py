"""A periodic job for the scheduler fault test (tests.sched_app:app)."""

import os

from redisq import App

app = App(os.environ.get("REDIS_URL"))


@app.periodic(every_s=1, name="s.tick", misfire_grace_s=30)
def tick() -> None: ...
