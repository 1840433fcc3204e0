"""Typed tasks: mypy completes and checks ``task.delay(...)`` against the function's own
signature, for ``@app.task``, ``@app.task(...)``, ``async def`` and ``bind=True`` tasks, and
``Job.result()`` has the function's return type. Runs mypy on a small file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
ROOT = Path(__file__).resolve().parents[2]

SOURCE = '''\
from redisq import App, JobContext

app = App("redis://127.0.0.1:1/0")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="q", retries=1)
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(bind=True)
def report(ctx: JobContext, n: int) -> str:
    return str(n)


total: int = add.delay(1, 2).result()
body: bytes = fetch.delay("u").result()
text: str = report.delay(3).result()
add.delay("1", 2)  # error: str for int
fetch.delay(url=3)  # error: int for str
report.delay()  # error: n missing (the context is not the caller's)
wrong: str = add.delay(1, 2).result()  # error: the result is an int
high: int = add.options(queue="high", retries=0, headers={"r": 1}).delay(1, 2).result()
add.options(queue="high").delay("1", 2)  # error: per-call options keep the signature
add.options(retry=0)  # error: no such option
add.options(timeout_s="5")  # error: a number
later: str = add.options(expires_s=60).enqueue((1, 2)).result()  # error: the result is an int
'''


@pytest.mark.timeout(60)  # a cold mypy run takes 3-5 s alone, more on a loaded machine
def test_mypy_rejects_wrong_task_arguments_and_accepts_right_ones(tmp_path: Path) -> None:
    path = tmp_path / "uses_tasks.py"
    path.write_text(SOURCE, "utf-8")
    res = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                          "--cache-dir", str(tmp_path / "cache"), str(path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = SOURCE.splitlines()
    expected = {n for n, line in enumerate(lines, 1) if "# error:" in line}
    found = {int(m) for m in re.findall(r"uses_tasks\.py:(\d+): error", res.stdout)}
    assert found == expected, res.stdout
