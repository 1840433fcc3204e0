"""The docs cannot drift: generated references are current, and every ```python example in
README.md and docs/*.md runs (against a private server; a `job.result()` in an example is
served by an in-process burst worker)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import redisq
from redisq import config
from redisq.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples() -> list[tuple[str, int, str]]:
    out = []
    for path in DOCS:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            out.append((path.name, i, match.group(1)))
    return out


def test_generated_references_are_current() -> None:
    res = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(("doc", "index", "code"), examples(),
                         ids=[f"{d}#{i}" for d, i, _ in examples()])
def test_example_runs(doc: str, index: int, code: str, redis_url: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    apps: list[redisq.App] = []
    original_init = redisq.App.__init__

    def tracking_init(self: redisq.App, url: str | None = None, **kw: object) -> None:
        if url and "localhost:6379" in url:
            url = redis_url  # never the machine's own Redis
        original_init(self, url, **kw)  # type: ignore[arg-type]
        apps.append(self)

    original_result = redisq.Job.result

    def result_with_worker(self: redisq.Job, timeout_s: float = 30.0, **kw: object) -> object:
        for app in apps:  # drain what the example queued, then answer
            Worker(app, config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 2}, {})
                   ).run()
        return original_result(self, min(timeout_s, 3.0), **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(redisq.App, "__init__", tracking_init)
    monkeypatch.setattr(redisq.Job, "result", result_with_worker)
    namespace: dict[str, object] = {"__name__": f"docs_{doc}_{index}"}
    exec(compile(code, f"{doc} example {index}", "exec"), namespace)
    for app in apps:
        app.close()
