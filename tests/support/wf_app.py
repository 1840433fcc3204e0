"""Workflow tasks that log every run to a file, not to Redis (``tests.support.wf_app:app``):
the fault tests restart Redis and SIGKILL workers, and count runs across processes.

Each run appends one line ``<kind> <n> <detail> <pid>`` with a single ``O_APPEND`` write.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from redisq import App

app = App(os.environ.get("REDIS_URL"))


def log_run(kind: str, n: int, detail: str = "-") -> None:
    line = f"{kind} {n} {detail} {os.getpid()}\n".encode()
    fd = os.open(os.environ["RUNS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(name="wf.member", retries=5, retry_backoff_s=0.05)
def member(n: int, sleep_s: float = 0.0) -> int:
    time.sleep(sleep_s)
    log_run("member", n)
    return n


@app.task(name="wf.collect", retries=5, retry_backoff_s=0.05)
def collect(results: list) -> int:
    log_run("callback", len(results), json.dumps(sorted(results), separators=(",", ":")))
    return len(results)


@app.task(name="wf.step", retries=5, retry_backoff_s=0.05)
def step(done: list, k: int, sleep_s: float = 0.0) -> list:
    log_run("start", k)
    time.sleep(sleep_s)
    log_run("step", k, json.dumps(done, separators=(",", ":")))
    return [*done, k]


def read_log(path: Path) -> list[tuple[str, int, str, int]]:
    if not path.exists():
        return []
    text = path.read_text()
    out = []
    for line in text[:text.rfind("\n") + 1].splitlines():  # not a line being written
        kind, n, detail, pid = line.split(" ")
        out.append((kind, int(n), detail, int(pid)))
    return out


def _crash_after_member_step(index: str, marker: str) -> None:
    """Make this worker process die (``os._exit``) right after it recorded member ``index``'s
    outcome in its group, before the settle that acks it: the window a chord must survive.
    Only the first process to get there dies (``marker`` is created exclusively)."""
    from redisq.backend import workflows

    original = workflows.run_end_calls

    def crashing(scripts: Any, calls: list[workflows.Call]) -> None:
        original(scripts, calls)
        if any(name == "wf_member" and str(args[1]) == index for name, _, args in calls):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(9)

    workflows.run_end_calls = crashing  # the recorder looks it up on the module at each call


if os.environ.get("CRASH_AFTER_MEMBER"):
    _crash_after_member_step(os.environ["CRASH_AFTER_MEMBER"], os.environ["CRASH_MARKER"])
