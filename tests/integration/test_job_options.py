"""Per-call options and headers through a real worker (in-process) and a real server:
``task.options(...)``, ``app.enqueue(..., options=)`` from a producer without the task,
``expires_s`` (status expired: recorded, counted, not run), ``result_ttl_s``, ``job_id``,
headers (``current_job().headers``, ``job.headers``), their caps, and the asyncio producer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from redisq import App, JobFailed, Retry, current_job
from redisq.aio import AsyncProducer
from redisq.backend import keys
from redisq.backend.finished import bucket_width_ms
from redisq.limits import MAX_HEADERS_BYTES, HeadersTooLarge
from redisq.ops.stats import format_snapshot, snapshot
from tests.support.inproc import running
from tests.support.wait import wait_until


def test_options_override_queue_retries_and_timeout(app: App) -> None:
    calls: list[int] = []

    @app.task(name="t.slow", retries=3, timeout_s=300)
    def slow() -> None:
        calls.append(current_job().attempt)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # pure Python: stopped at once by the time limit
            pass

    job = slow.options(queue="high", retries=0, timeout_s=0.2).delay()
    assert job.queue == "high"
    with running(app, queues="high"), pytest.raises(JobFailed, match="JobTimeout"):
        job.result(5)
    info = job.info()
    assert info["status"] == "dead" and info["attempts"] == "1" and calls == [1]
    assert "timeout_s=0.2" in info["error_message"]


def test_retries_option_gives_more_attempts_than_the_task(app: App) -> None:
    attempts: list[int] = []

    @app.task(name="t.flaky", retries=0, retry_backoff_s=0.01)
    def flaky() -> str:
        attempts.append(current_job().attempt)
        if len(attempts) < 3:
            raise ConnectionError("transient")
        return "ok"

    job = flaky.options(retries=2).delay()
    with running(app):
        assert job.result(5) == "ok"
    assert attempts == [1, 2, 3]


def test_producer_without_the_task_sets_options_and_headers(app: App, redis_url: str) -> None:
    seen: list[dict] = []

    @app.task(name="t.remote", retries=5, retry_backoff_s=0.01)
    def remote(x: int) -> None:
        seen.append(current_job().headers)
        raise ValueError(f"no {x}")

    producer = App(redis_url)  # knows no task: only the name
    try:
        job = producer.enqueue("t.remote", [7], options={"retries": 0,
                                                         "headers": {"request_id": "r-1"}})
        with running(app), pytest.raises(JobFailed, match="no 7"):
            job.result(5)
        assert job.status == "dead" and seen == [{"request_id": "r-1"}]
        assert job.headers == {"request_id": "r-1"}
    finally:
        producer.close()


def test_headers_are_seen_by_the_task_and_on_the_record(app: App) -> None:
    @app.task(name="t.echo")
    def echo() -> dict:
        return current_job().headers

    headers = {"request_id": "abc", "tenant": 7, "tags": ["a", "b"]}
    job = echo.options(headers=headers).delay()
    assert job.headers == headers  # on the record while queued
    delayed = echo.options(headers={"d": 1}).enqueue(delay_s=0.05)  # the enqueue script
    assert delayed.headers == {"d": 1}
    plain = echo.delay()
    with running(app):
        assert job.result(5) == headers and delayed.result(5) == {"d": 1}
        assert plain.result(5) == {}
    assert job.headers == headers and json.loads(job.info()["headers"]) == headers
    assert plain.headers == {} and "headers" not in plain.info()


def test_map_with_options_carries_them_on_every_job(app: App) -> None:
    @app.task(name="t.tagged")
    def tagged(n: int) -> list:
        return [n, current_job().headers]

    jobs = tagged.options(headers={"batch": "b1"}, result_ttl_s=60).map([1, 2, 3])
    assert [j.headers for j in jobs] == [{"batch": "b1"}] * 3  # on the records while queued
    with running(app):
        assert [j.result(5) for j in jobs] == [[n, {"batch": "b1"}] for n in (1, 2, 3)]
    assert all(0 < record_ttl_ms(app, j.id) <= 60_000 + bucket_width_ms(60_000) for j in jobs)
    with pytest.raises(TypeError, match="job_id"):
        tagged.options(job_id="x").map([1])


def test_job_id_option_and_a_duplicate_while_queued(app: App) -> None:
    @app.task(name="t.order")
    def order(n: int) -> int:
        return n

    first = order.options(job_id="order-7").delay(1)
    again = order.options(job_id="order-7").delay(2)
    assert first.id == again.id == "order-7" and first.created and not again.created
    with running(app):
        assert first.result(5) == 1


def test_result_ttl_s_sets_the_finished_records_ttl(app: App) -> None:
    @app.task(name="t.short")
    def short() -> int:
        return 1

    kept = short.delay()
    brief = short.options(result_ttl_s=30).delay()
    with running(app):
        assert kept.result(5) == 1 and brief.result(5) == 1
    assert 0 < record_ttl_ms(app, brief.id) <= 30_000 + bucket_width_ms(30_000)
    assert record_ttl_ms(app, kept.id) > 40_000  # the App's 1 day
    cancelled = short.options(result_ttl_s=20).enqueue(delay_s=60)
    assert cancelled.cancel() and cancelled.status == "cancelled"
    assert 0 < record_ttl_ms(app, cancelled.id) <= 20_000


def test_expired_job_is_recorded_counted_and_not_run(app: App) -> None:
    ran: list[str] = []

    @app.task(name="t.notify")
    def notify(who: str) -> str:
        ran.append(who)
        return who

    late = notify.options(expires_s=0.05).delay("late")
    in_time = notify.options(expires_s=60).delay("in time")
    wait_until(lambda: time.time() > json.loads(_message(app, late.id))["options"]["expires_at"],
               what="the deadline to pass")
    with running(app):
        assert in_time.result(5) == "in time"
        with pytest.raises(JobFailed, match="expired") as err:
            late.result(5)
    assert err.value.args and ran == ["in time"]
    info = late.info()
    assert info["status"] == "expired" and "deadline" in info["error_message"]
    assert record_ttl_ms(app, late.id) > 0  # kept like a result, not for ever
    counts = app.queue("default").counts()
    assert counts["expired"] == 1 and counts["succeeded"] == 1
    text = format_snapshot(snapshot(app.client), False)
    assert "expired" in text.splitlines()[0]
    assert text.splitlines()[1].split()[7] == "1"  # the default queue's expired column


def test_a_retry_due_after_the_deadline_expires(app: App) -> None:
    attempts: list[int] = []

    @app.task(name="t.once", retries=3)
    def once() -> None:
        attempts.append(current_job().attempt)
        raise Retry(delay_s=0.5)

    job = once.options(expires_s=0.2).delay()
    with running(app), pytest.raises(JobFailed, match="expired"):
        job.result(5)
    assert attempts == [1] and job.status == "expired"


def test_expires_s_counts_from_when_a_delayed_job_is_due(app: App) -> None:
    @app.task(name="t.later")
    def later() -> int:
        return 1

    job = later.options(expires_s=5).enqueue(delay_s=0.2)
    with running(app):
        assert job.result(5) == 1  # due after 0.2 s, deadline 5 s after that


def record_ttl_ms(app: App, job_id: str, queue: str = "default") -> int:
    """How long a job's record has to live: its key's TTL, or that of the done bucket a
    finished record was packed into (redisq/backend/finished.py)."""
    if app.client.exists(keys.job(queue, job_id)):
        return int(app.client.pttl(keys.job(queue, job_id)))
    for end in app.client.zrange(keys.done(queue), 0, -1):
        bucket = keys.done_bucket(queue, int(end))
        if app.client.hexists(bucket, job_id):
            return int(app.client.pttl(bucket))
    raise AssertionError(f"no record of {job_id}")


def _message(app: App, job_id: str) -> bytes:
    for body in app.client.lrange(keys.pending("default"), 0, -1):
        if json.loads(body)["id"] == job_id:
            return body
    raise AssertionError(f"no message for {job_id}")


def test_producers_refuse_bad_options_and_big_headers(app: App) -> None:
    @app.task(name="t.any")
    def any_task() -> None: ...

    with pytest.raises(TypeError, match="unknown job option 'retry'"):
        any_task.options(retry=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown job option 'priority'"):
        app.enqueue("t.any", options={"priority": 1})
    for bad, why in (({"retries": -1}, "'retries' must be >= 0"),
                     ({"retries": True}, "'retries' must be int"),
                     ({"timeout_s": 0}, "'timeout_s' must be > 0"),
                     ({"expires_s": float("inf")}, "'expires_s' must be a number > 0"),
                     ({"result_ttl_s": "1"}, "'result_ttl_s' must be int or float")):
        with pytest.raises(ValueError, match=why):
            app.enqueue("t.any", options=bad)
    with pytest.raises(HeadersTooLarge, match=f"MAX_HEADERS_BYTES={MAX_HEADERS_BYTES:,}"):
        any_task.options(headers={"blob": "x" * MAX_HEADERS_BYTES}).delay()
    with pytest.raises(TypeError, match="queue given twice"):
        app.enqueue("t.any", queue="a", options={"queue": "b"})
    assert app.queue("default").depth() == 0  # nothing refused was queued


@pytest.mark.parametrize(("options", "headers", "reason"), [
    ({"priority": 1}, {}, "unknown job option 'priority'"),
    ({"retries": "3"}, {}, "'retries' must be int"),
    ({}, {"blob": "x" * MAX_HEADERS_BYTES}, "MAX_HEADERS_BYTES"),
])
def test_workers_dead_letter_bad_options_and_big_headers(app: App, options: dict,
                                                         headers: dict, reason: str) -> None:
    ran: list[int] = []

    @app.task(name="t.victim")
    def victim() -> None:
        ran.append(1)

    body = {"id": "j-bad", "task": "t.victim", "queue": "default", "attempt": 1,
            "enqueued_at": time.time(), "options": options, "headers": headers}
    app.client.hset(keys.job("default", "j-bad"), mapping={"status": "queued", "task": "t.victim"})
    app.queue("default").put(json.dumps(body, separators=(",", ":")))  # as redisq writes
    with running(app):
        wait_until(lambda: app.queue("default").counts().get("dead_letters"),
                   what="the dead letter")
    entry = json.loads(app.queue("default").dead_letters()[0])
    assert reason in entry["reason"] and ran == []
    assert app.job("j-bad", "default").status == "dead"  # type: ignore[union-attr]


def test_async_producer_sends_options_and_headers(app: App) -> None:
    @app.task(name="t.aecho")
    def aecho() -> list:
        return [current_job().headers, current_job().attempt]

    async def send() -> str:
        async with AsyncProducer(app) as producer:
            job = await producer.enqueue("t.aecho", options={"headers": {"via": "aio"},
                                                             "job_id": "aio-1"})
            return job.id

    job_id = asyncio.run(send())
    assert job_id == "aio-1"
    with running(app):
        assert app.job("aio-1").result(5) == [{"via": "aio"}, 1]  # type: ignore[union-attr]


def test_a_requeued_dead_job_runs_whatever_its_old_deadline(app: App) -> None:
    runs: list[int] = []

    @app.task(name="t.fragile", retries=0)
    def fragile() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first time")
        return "second time"

    job = fragile.options(expires_s=0.3, headers={"k": "v"}).delay()
    with running(app):
        with pytest.raises(JobFailed, match="first time"):
            job.result(5)
        deadline = time.monotonic() + 0.3
        wait_until(lambda: time.monotonic() > deadline, what="the old deadline to pass")
        assert app.requeue_dead("default") == 1
        assert job.result(5) == "second time"
    assert job.headers == {"k": "v"}


def test_options_with_delay_on_commit(app: App) -> None:
    commits: list[Any] = []
    app.use_commit_hook(commits.append)  # the callbacks run when the test "commits"

    @app.task(name="t.after_commit")
    def after_commit(n: int) -> list:
        return [n, current_job().headers]

    after_commit.options(headers={"tx": "1"}, job_id="tx-job").delay_on_commit(5)
    assert app.job("tx-job") is None and len(commits) == 1  # nothing queued before the commit
    commits[0]()
    job = app.job("tx-job")
    assert job is not None and job.headers == {"tx": "1"}
    with running(app):
        assert job.result(5) == [5, {"tx": "1"}]
