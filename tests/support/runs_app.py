"""Tasks that log every run to a file, not to Redis (``tests.support.runs_app:app``).

Tests that count runs across worker processes, SIGKILLs and failovers read the log with
:func:`read_runs`: a count kept in Redis could itself be lost in a failover, a file cannot.
Each run appends one line ``<n> <monotonic time> <pid>`` with a single ``O_APPEND`` write, so
lines from concurrent threads and processes never interleave.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from redisq import App

app = App(os.environ.get("REDIS_URL"))
RUNS_FILE_ENV = "RUNS_FILE"


@app.task(name="r.record", retries=0)
def record(n: int, sleep_s: float = 0.0) -> int:
    if sleep_s:
        time.sleep(sleep_s)
    line = f"{n} {time.monotonic():.6f} {os.getpid()}\n".encode()
    fd = os.open(os.environ[RUNS_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return n


class Runs:
    """What the log says: run counts per job number, first run time, which pid ran it."""

    def __init__(self, path: Path) -> None:
        self.count: Counter[int] = Counter()
        self.first: dict[int, float] = {}
        self.pids: dict[int, set[int]] = {}
        if not path.exists():
            return
        text = path.read_text()
        for line in text[:text.rfind("\n") + 1].splitlines():  # not a line being written
            n_text, at_text, pid_text = line.split()
            n, at, pid = int(n_text), float(at_text), int(pid_text)
            self.count[n] += 1
            self.first.setdefault(n, at)
            self.pids.setdefault(n, set()).add(pid)


def read_runs(path: Path) -> Runs:
    return Runs(path)
