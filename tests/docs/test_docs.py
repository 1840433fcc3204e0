"""The docs cannot drift: the generated references are current, and every ```python example
in README.md and docs/*.md runs against a real server (a `job.result()` in an example is served
by an in-process burst worker draining every queue the example's tasks use).

Convention: a block opened with ```python title="illustration: ..."``` shows code that needs
something the tests do not have (another library, a web framework's request): it is compiled,
not run. Everything else runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import redisq
from redisq import config
from redisq.worker.prodcons import Worker

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```", re.S | re.M)


def examples() -> list[tuple[str, int, str, str]]:
    """(file, index, info string, code) of every python block."""
    out = []
    for path in DOCS:
        blocks = [m for m in FENCE.finditer(path.read_text()) if m.group(1) == "python"]
        out += [(path.name, i, m.group(2).strip(), m.group(3)) for i, m in enumerate(blocks)]
    return out


EXAMPLES = examples()
RUNNABLE = [e for e in EXAMPLES if "illustration" not in e[2]]
ILLUSTRATIONS = [e for e in EXAMPLES if "illustration" in e[2]]


def test_generated_references_are_current() -> None:
    res = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=9)
    assert res.returncode == 0, res.stderr


def test_every_python_block_is_seen() -> None:
    """No example escapes the runner by a different fence (```py, ```Python) or a bad title."""
    for path in DOCS:
        for match in FENCE.finditer(path.read_text()):
            lang, info = match.group(1), match.group(2).strip()
            assert lang.lower() not in ("py", "python3", "pycon") and lang != "Python", (
                f"{path.name}: use ```python for Python examples")
            if lang == "python" and info:
                assert re.fullmatch(r'title="illustration: [^"]+"', info), (
                    f"{path.name}: unknown block title {info!r}")
    readme = [e for e in RUNNABLE if e[0] == "README.md"]
    assert readme and "rebuild_index" in readme[0][3], "the README's API tour must run"


@pytest.mark.parametrize(("doc", "index", "info", "code"), ILLUSTRATIONS,
                         ids=[f"{d}#{i}" for d, i, _, _ in ILLUSTRATIONS])
def test_illustration_compiles(doc: str, index: int, info: str, code: str) -> None:
    compile(code, f"{doc} example {index}", "exec")


def drain(apps: list[redisq.App]) -> None:
    """Run what the examples queued: a burst worker per app over all of its tasks' queues."""
    for app in apps:
        if app.eager:  # its jobs ran when they were queued (and a worker refuses it)
            continue
        queues = sorted({t.options.queue for t in app.tasks.values()} | {"default"})
        settings = config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 2,
                                "queues": ",".join(queues)}, {})
        Worker(app, settings).run()


@pytest.mark.parametrize(("doc", "index", "info", "code"), RUNNABLE,
                         ids=[f"{d}#{i}" for d, i, _, _ in RUNNABLE])
def test_example_runs(doc: str, index: int, info: str, code: str, redis_url: str,
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
        drain(apps)
        return original_result(self, min(timeout_s, 3.0), **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(redisq.App, "__init__", tracking_init)
    monkeypatch.setattr(redisq.Job, "result", result_with_worker)
    namespace: dict[str, object] = {"__name__": f"docs_{doc}_{index}"}
    try:
        exec(compile(code, f"{doc} example {index}", "exec"), namespace)
    finally:
        for app in apps:
            app.close()
