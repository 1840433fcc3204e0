"""The soak's task (bench/soak.py), run by ``redisq worker --app bench.soak_tasks:app``.

``soak.work(i)``: job i % 100 == 0 fails every time (no retry, no dead letter: its record says
failed and expires with failure_ttl_s); i % 100 == 1 fails its first attempt and succeeds on the
retry (retry_backoff_s 0.05); the rest succeed at once. A success counts itself in the 2-bit
counter i of the bitfield ``soak:done`` (one BITFIELD per job; saturating), which is how the
soak proves each job finished exactly once (0 for the failing ones).
"""

import os

from redisq import App, JobContext

URL = os.environ["REDIS_URL"]  # the soak's own server; never a default

app = App(URL)
DONE_KEY = "soak:done"


@app.task(name="soak.work", bind=True, retries=1, retry_backoff_s=0.05,
          retry_backoff_cap_s=0.05, dead_letter=False)
def work(ctx: JobContext, i: int) -> None:
    if i % 100 == 0:
        raise ValueError(f"job {i} always fails")
    if i % 100 == 1 and ctx.attempt == 1:
        raise ValueError(f"job {i} fails its first attempt")
    app.client.execute_command("BITFIELD", DONE_KEY, "OVERFLOW", "SAT", "INCRBY", "u2",
                               f"#{i}", 1)
