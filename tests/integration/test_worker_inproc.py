"""Worker features, in-process against a real server (faster than subprocesses). The systemd
notify test is in test_worker_notify.py, job policy in test_worker_jobs.py."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from redisq import App, current_job
from redisq.backend.registry import Registry
from tests.support.inproc import running
from tests.support.procs import run_cli
from tests.support.wait import wait_until


def test_results_progress_hooks_and_registry(app: App) -> None:
    seen: list[str] = []
    app.before_job(lambda ctx: seen.append(f"before:{ctx.task}"))
    app.on_startup(lambda w: seen.append("startup"))
    release = threading.Event()

    @app.task(name="t.steps")
    def steps(n: int) -> dict:
        current_job().progress(0.5, "halfway")
        release.wait(5)
        return {"n": n}

    job = steps.delay(3)
    with running(app) as worker:
        wait_until(lambda: job.info().get("progress_message") == "halfway", what="progress")
        assert job.status == "started" and float(job.info()["progress"]) == 0.5
        wait_until(lambda: any(w["current"] for w in Registry(app.client).workers()), 3,
                   what="the registry to show the running job")
        entry = Registry(app.client).workers()[0]
        assert entry["id"] == worker.id and entry["current"][0]["id"] == job.id
        release.set()
        assert job.result(5) == {"n": 3}
    assert seen[:2] == ["startup", "before:t.steps"]
    assert Registry(app.client).workers() == []  # unregistered on stop


def test_unique_while_running_then_free(app: App) -> None:
    release = threading.Event()

    @app.task(name="t.batch", unique_by="project_id")
    def batch(project_id: int) -> int:
        release.wait(5)
        return project_id

    first = batch.delay(7)
    with running(app):
        wait_until(lambda: first.status == "started", what="start")
        assert batch.delay(7).id == first.id  # still running: the same job
        release.set()
        assert first.result(5) == 7
        second = batch.delay(7)
        assert second.id != first.id and second.result(5) == 7


def test_cancel_requeue_dead_priority_and_burst(app: App) -> None:
    order: list[str] = []

    @app.task(name="t.mark")
    def mark(tag: str) -> str:
        order.append(tag)
        return tag

    @app.task(name="t.fail", retries=0)
    def fail() -> None:
        if not app.client.exists("fixed"):
            raise RuntimeError("not yet")

    cancelled = mark.enqueue(args=("cancelled",))
    assert cancelled.cancel() is True
    mark.enqueue(args=("low",), queue="default")
    mark.enqueue(args=("high",), queue="high")
    dead = fail.delay()
    with running(app, queues="high,default", burst=True, concurrency=1) as worker:
        wait_until(worker.stopping.is_set, 8, what="the burst to end")
    assert order == ["high", "low"]  # cancelled skipped, high first
    assert cancelled.status == "cancelled" and dead.status == "dead"
    app.client.set("fixed", 1)
    assert app.requeue_dead("default") == 1
    with running(app):
        assert dead.result(5) is None and dead.status == "succeeded"


def test_delayed_job_runs_after_its_delay(app: App) -> None:
    @app.task(name="t.when")
    def when() -> float:
        return time.time()

    job = when.enqueue(delay_s=0.6)
    queued_at = time.time()
    assert job.status == "queued"
    with running(app):
        assert job.result(5) - queued_at >= 0.55


def test_health_command(app: App, redis_url: str) -> None:
    """`redisq health` as a process sees a live worker; its other exit codes are checked
    in-process in test_cli_commands.py."""
    with running(app) as worker:
        wait_until(lambda: Registry(app.client).workers(), what="registration")
        healthy = run_cli(redis_url, "health", "--worker-id", worker.id, "--max-age-s", "5")
        assert healthy.returncode == 0 and "1 worker(s) progressing" in healthy.stdout
    Registry(app.client).beat("stuck", {"loop_at": time.time() - 120}, 30)
    stale = run_cli(redis_url, "health", "--max-age-s", "60")
    assert stale.returncode == 1 and "stuck" in stale.stdout


def test_worker_with_scheduler_runs_periodic_jobs(app: App) -> None:
    runs: list[float] = []

    @app.periodic(every_s=0.5, name="t.beat")
    def beat() -> None:
        runs.append(time.time())

    with running(app, with_scheduler=True):
        wait_until(lambda: len(runs) >= 2, 5, what="two periodic runs")
    # Ticks are 0.5 s apart; each fires within one supervisor tick (0.25 s) after it is due.
    assert runs[1] - runs[0] >= 0.2


def test_one_info_line_per_job_with_its_duration(app: App, caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """At INFO the operator sees every job once, when it ends (issue 17: a second line per job
    cost ~10 % of the throughput); 'started' is a DEBUG line."""
    @app.task(name="t.quick")
    def quick(n: int) -> int:
        return n

    @app.task(name="t.broken", retries=0)
    def broken() -> None:
        raise ValueError("no")

    jobs = [quick.delay(i) for i in range(20)] + [broken.delay()]
    with caplog.at_level(logging.INFO, logger="redisq.worker"), running(app):
        assert [j.result(5) for j in jobs[:20]] == list(range(20))
        wait_until(lambda: jobs[-1].status in ("dead", "failed"), what="the failure")
        wait_until(lambda: len([r for r in caplog.records if "job=" in r.getMessage()]) == 21,
                   what="21 job lines")
    lines = [r for r in caplog.records if "job=" in r.getMessage()]
    assert not any("started" in r.getMessage() for r in lines)
    for job in jobs[:20]:
        (line,) = [r for r in lines if f"job={job.id}" in r.getMessage()]
        assert line.levelno == logging.INFO
        assert re.search(r"task=t\.quick queue=default succeeded duration_s=\d+\.\d{6}$",
                         line.getMessage())
    (failed,) = [r for r in lines if f"job={jobs[-1].id}" in r.getMessage()]
    assert failed.levelno == logging.WARNING and "error=ValueError: no" in failed.getMessage()
    caplog.clear()
    debug_job = quick.delay(99)
    with caplog.at_level(logging.DEBUG, logger="redisq.worker"), running(app):
        assert debug_job.result(5) == 99
    assert any(f"job={debug_job.id} task=t.quick queue=default started attempt=1"
               in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)
