"""Job policy through a real worker (in-process) and a real server: retries and their backoff,
Retry(delay_s=), time limits, async tasks, hooks, unique jobs, cancel, and a worker that keeps
its slots whatever a task or Redis does."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
import time
from typing import Any

import pytest
import redis

from redisq import App, DuplicateJob, JobFailed, Retry
from redisq.backend import keys
from redisq.backend.connection import ConnectionOptions
from redisq.backend.registry import Registry
from redisq.worker.prodcons import Worker
from tests.support.inproc import running
from tests.support.wait import wait_until


def events_of(app: App) -> Any:
    pubsub = app.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.EVENTS_CHANNEL)
    wait_until(lambda: pubsub.get_message(timeout=0.05) is None and pubsub.subscribed,
               what="the events subscription")
    return pubsub


def statuses(pubsub: Any, job_id: str, until: str) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + 5
    while until not in out and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.1)
        if msg is not None:
            event = json.loads(msg["data"])
            if event.get("id") == job_id and event["type"] == "job":
                out.append(event["status"])
    return out


def test_failing_task_is_retried_with_growing_backoff(app: App) -> None:
    stamps: list[float] = []

    @app.task(name="t.flaky", retries=3, retry_backoff_s=0.2)
    def flaky() -> str:
        stamps.append(time.monotonic())
        if len(stamps) < 3:
            raise ConnectionError(f"transient #{len(stamps)}")
        return "ok"

    events = events_of(app)
    job = flaky.delay()
    with running(app):
        assert job.result(8) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # retry n waits uniform(c/2, c), c = 0.2 * 2**(n-1); promotion adds at most 0.5 s more
    assert len(stamps) == 3 and gaps[0] >= 0.1 and gaps[1] >= 0.2
    info = job.info()
    assert info["attempts"] == "3" and info["status"] == "succeeded"
    assert statuses(events, job.id, "succeeded") == ["retrying", "retrying", "succeeded"]
    counts = app.queue("default").counts()
    assert counts["retrying"] == 2 and counts["succeeded"] == 1


def test_retry_delay_is_honoured_and_shown(app: App) -> None:
    stamps: list[float] = []

    @app.task(name="t.later", retries=1)
    def later() -> str:
        stamps.append(time.time())
        if len(stamps) == 1:
            raise Retry(delay_s=0.8, reason="not ready")
        return "ok"

    job = later.delay()
    with running(app):
        wait_until(lambda: job.status == "retrying", 5, what="the retry")
        info = job.info()
        assert info["error_type"] == "Retry" and info["error_message"] == "not ready"
        assert float(info["next_attempt_at"]) >= stamps[0] + 0.75
        assert job.result(5) == "ok"
    assert 0.8 <= stamps[1] - stamps[0] < 3.0  # due after 0.8 s, promoted every 0.5 s


def test_time_limit_marks_the_job_dead_or_failed(app: App) -> None:
    @app.task(name="t.spin", timeout_s=0.3, retries=0)
    def spin() -> None:
        while True:
            pass

    @app.task(name="t.nap", timeout_s=0.2, retries=0, dead_letter=False)
    def nap() -> None:
        time.sleep(0.7)  # blocked in C: stopped when the call returns

    @app.task(name="t.ok")
    def ok() -> str:
        return "ok"

    spun, napped = spin.delay(), nap.delay()
    with running(app, concurrency=2):
        for job, status in ((spun, "dead"), (napped, "failed")):
            with pytest.raises(JobFailed) as info:
                job.result(5)
            assert info.value.error_type == "JobTimeout" and job.status == status
        assert "exceeded timeout_s=0.3" in spun.info()["error_message"]
        assert ok.delay().result(5) == "ok"  # both threads are free again
        assert ok.delay().result(5) == "ok"
    dead = [json.loads(e) for e in app.queue("default").dead_letters()]
    assert [d["job_id"] for d in dead] == [spun.id]  # dead_letter=False: no entry


def test_async_tasks_run_and_time_out(app: App) -> None:
    @app.task(name="t.fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0.01)
        return n + 1

    @app.task(name="t.hang", timeout_s=0.2, retries=0)
    async def hang() -> None:
        await asyncio.sleep(30)

    jobs = fetch.map(range(5))
    stuck = hang.delay()
    with running(app):
        assert [j.result(5) for j in jobs] == [1, 2, 3, 4, 5]
        with pytest.raises(JobFailed, match="JobTimeout"):
            stuck.result(5)


def test_every_hook_is_called_and_failing_hooks_break_nothing(app: App) -> None:
    calls: list[tuple] = []
    app.on_startup(lambda w: calls.append(("startup", w.id)))
    app.before_job(lambda ctx: calls.append(("before", ctx.task, ctx.attempt)))
    app.on_failure(lambda ctx, exc: calls.append(("failure", ctx.task, type(exc).__name__)))
    app.after_job(lambda ctx, out: calls.append(("after", ctx.task, out.status)))
    app.after_job(lambda ctx, out: 1 / 0)
    app.on_shutdown(lambda w: 1 / 0)
    app.on_shutdown(lambda w: calls.append(("shutdown", w.id)))

    @app.task(name="t.ok")
    def ok() -> int:
        return 1

    @app.task(name="t.ko", retries=0)
    def ko() -> None:
        raise ValueError("ko")

    good, bad = ok.delay(), ko.delay()
    with running(app, concurrency=1) as worker:
        assert good.result(5) == 1
        with pytest.raises(JobFailed):
            bad.result(5)
        assert ok.delay().result(5) == 1
    assert calls == [("startup", worker.id), ("before", "t.ok", 1), ("after", "t.ok", "succeeded"),
                     ("before", "t.ko", 1), ("failure", "t.ko", "ValueError"),
                     ("after", "t.ko", "dead"), ("before", "t.ok", 1),
                     ("after", "t.ok", "succeeded"), ("shutdown", worker.id)]
    assert Registry(app.client).workers() == []  # unregistered despite the failing hook


def test_unique_job_while_queued_or_running_then_allowed_again(app: App) -> None:
    release = threading.Event()

    @app.task(name="t.build", unique_by="project_id")
    def build(project_id: int, note: str = "") -> int:
        release.wait(5)
        return project_id

    @app.task(name="t.strict", unique_by="project_id", on_duplicate="raise")
    def strict(project_id: int) -> int:
        release.wait(5)
        return project_id

    first, held = build.delay(7, "a"), strict.delay(7)
    assert build.delay(7, "b").id == first.id  # queued: the same job
    with pytest.raises(DuplicateJob):
        strict.delay(7)
    other = build.delay(8)
    with running(app):
        wait_until(lambda: first.status == "started" and held.status == "started", 5,
                   what="both to start")
        again = build.delay(project_id=7)
        assert again.id == first.id and not again.created  # running: still the same job
        with pytest.raises(DuplicateJob) as info:
            strict.delay(7)
        assert info.value.existing_id == held.id
        release.set()
        assert first.result(5) == held.result(5) == 7 and other.result(5) == 8
        fresh = build.delay(7)
        assert fresh.created and fresh.id != first.id and fresh.result(5) == 7
        assert strict.delay(7).result(5) == 7


def test_cancelled_jobs_never_run(app: App) -> None:
    ran: list[str] = []

    @app.task(name="t.mark", retries=2, retry_backoff_s=0.3)
    def mark(tag: str) -> str:
        ran.append(tag)
        if tag == "retried":
            raise RuntimeError("fails once, then is cancelled while it waits")
        return tag

    now, later = mark.delay("now"), mark.enqueue(args=("later",), delay_s=0.3)
    assert now.cancel() and later.cancel() and not now.cancel()
    retried = mark.delay("retried")
    with running(app):
        wait_until(lambda: retried.status == "retrying", 5, what="the first attempt")
        assert retried.cancel() and retried.status == "cancelled"
        assert mark.delay("after").result(5) == "after"
        time.sleep(0.8)  # past the retry's and the delayed job's due time
    assert ran == ["retried", "after"]
    assert {j.status for j in (now, later, retried)} == {"cancelled"}
    for job in (now, retried):  # not the error of the attempt that ran before the cancel
        with pytest.raises(JobFailed) as info:
            job.result(1)
        assert info.value.error_type == "cancelled"


def test_a_task_calling_sys_exit_does_not_cost_its_slot(app: App) -> None:
    @app.task(name="t.exit", retries=0)
    def leave() -> None:
        sys.exit(3)

    @app.task(name="t.ok")
    def ok() -> str:
        return "ok"

    gone = leave.delay()
    with running(app, concurrency=1):
        with pytest.raises(JobFailed) as info:
            gone.result(5)
        assert info.value.error_type == "SystemExit"
        assert [ok.delay().result(5) for _ in range(3)] == ["ok"] * 3


def test_error_replies_while_settling_lose_nothing(app: App) -> None:
    @app.task(name="t.ok")
    def ok(n: int) -> int:
        return n

    # The main loop's reserve, a pool thread's settle+take, then the recorder's retried settle.
    failures = {"reserve": 1, "settle+take": 1, "settle": 2}

    def flaky(worker: Worker) -> None:
        def wrap(obj: Any, name: str, key_of: Any) -> None:
            real = getattr(obj, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                key = key_of(*args)
                if failures[key]:
                    failures[key] -= 1
                    raise redis.ResponseError("OOM command not allowed (simulated)")
                return real(*args, **kwargs)

            setattr(obj, name, call)

        wrap(worker.consumer, "take_with", lambda calls, n: "settle+take" if calls else "reserve")
        wrap(worker.records, "settle_many", lambda calls: "settle")

    jobs = ok.map(range(6))
    with running(app, concurrency=1, before_start=flaky) as worker:
        assert [j.result(8) for j in jobs] == list(range(6))
        assert failures == {"reserve": 0, "settle+take": 0, "settle": 0}
        wait_until(lambda: worker.consumer.held() == 0 and worker.state()["current"] == [], 3,
                   what="every slot free")
        assert [j.status for j in jobs] == ["succeeded"] * 6
        assert ok.delay(9).result(5) == 9
    counts = app.queue("default").counts()
    assert counts["in_flight"] == 0 and counts["depth"] == 0 and counts["succeeded"] == 7


def test_block_timeout_longer_than_the_apps_socket_deadline(redis_url: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """--block-timeout-s above the App's connection options must not turn every idle wait
    into a socket timeout (a reconnect each time, and jobs picked up late)."""
    app = App(redis_url, options=ConnectionOptions(block_timeout_s=0.1, read_margin_s=0.1))

    @app.task(name="t.ok")
    def ok() -> str:
        return "ok"

    try:
        with running(app, block_timeout_s=0.6, lease_s=3) as worker:
            wait_until(lambda: worker.iterations >= 3, 5, what="three idle waits")
            assert ok.delay().result(5) == "ok"
        assert not worker.outage.down and worker.outage.reconnects == 0
        assert "connection lost" not in caplog.text
    finally:
        app.close()


def test_short_jobs_under_a_backlog_share_round_trips_and_stop_cleanly(app: App) -> None:
    """Short jobs with every slot busy: a pool thread takes several per round trip (their
    outcomes go through the recorder). Stopped halfway, the worker gives the taken jobs it had
    not started back to the queue; a second worker runs the rest: every job exactly once,
    nothing left in a processing list."""
    runs: dict[int, int] = {}
    lock = threading.Lock()

    @app.task(name="t.short", retries=0)
    def short(n: int) -> None:
        with lock:
            runs[n] = runs.get(n, 0) + 1

    total = 3000
    short.map(range(total))
    sizes: list[int] = []

    def spy(worker: Worker) -> None:
        take = worker.consumer.take_with

        def counted(calls: Any, n: int) -> Any:
            sizes.append(n)
            return take(calls, n)

        worker.consumer.take_with = counted  # type: ignore[method-assign]

    with running(app, before_start=spy, concurrency=4):
        wait_until(lambda: len(runs) >= total // 3, 8, what="a third of the jobs")
    assert max(sizes) > 1, "short jobs under a backlog were taken one per round trip"
    assert 0 < len(runs) < total, "stopped halfway"
    assert app.client.llen(keys.pending("default")) == total - len(runs)  # given back
    with running(app, burst=True, concurrency=4) as second:
        wait_until(lambda: len(runs) == total, 8, what="the rest of the jobs")
        wait_until(lambda: second.stopping.is_set(), 5, what="the burst end")
    assert set(runs) == set(range(total)) and set(runs.values()) == {1}
    assert not [k for k in app.client.scan_iter("redisq:{default}:processing:*")
                if app.client.llen(k)]


def test_a_fast_job_from_an_idle_worker_records_its_attempt_and_start(app: App) -> None:
    """An idle worker takes a job by a blocking move and marks it started after handing it to
    a thread; a fast job can settle before that mark. Its record must still say attempt 1
    and when it started (once, a succeeded job showed attempts 0)."""
    @app.task(name="t.fast")
    def fast() -> int:
        return 1

    def late_mark(worker: Worker) -> None:
        start = worker.records.start

        def later(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.05)  # the race, made certain: the job settles before its mark
            return start(*args, **kwargs)

        worker.records.start = later  # type: ignore[method-assign]

    with running(app, before_start=late_mark, concurrency=2):
        wait_until(lambda: bool(Registry(app.client).workers()), 3, what="the worker")
        jobs = []
        for _ in range(5):  # one at a time: each taken by the idle worker's blocking move
            jobs.append(fast.delay())
            assert jobs[-1].result(3) == 1
    for job in jobs:
        info = job.info()
        assert info["attempts"] == "1", info
        assert float(info["started_at"]) <= float(info["finished_at"])
