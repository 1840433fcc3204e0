"""Middleware end to end on a real server and an in-process worker: headers a producer
middleware adds reach the task and the record (delay, enqueue with a delay, map, asyncio),
``after_enqueue`` sees every job, and a failing middleware loses no job."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import replace
from typing import Any

import pytest

from redisq import App, JobFailed, current_job
from redisq.aio import AsyncProducer
from redisq.job import Job, JobContext
from redisq.model import Envelope, Outcome
from tests.support.inproc import running


class RequestId:
    """Stamps each job with the producer's request id; the worker side logs what it saw."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, bool]] = []
        self.executed: list[tuple[str, str, int]] = []
        self.dead: list[str] = []

    def before_enqueue(self, envelope: Envelope) -> Envelope:
        return replace(envelope, headers={**envelope.headers, "request_id": "req-1"})

    def after_enqueue(self, job: Job[Any]) -> None:
        self.enqueued.append((job.id, job.created))

    def before_execute(self, job: JobContext) -> None:
        self.executed.append((job.id, job.headers["request_id"], job.attempt))

    def on_dead(self, job: JobContext, outcome: Outcome) -> None:
        self.dead.append(job.id)


def test_producer_middleware_headers_reach_every_kind_of_job(app: App) -> None:
    mw = RequestId()
    app.add_middleware(mw)

    @app.task(name="t.who")
    def who(n: int) -> list[Any]:
        return [n, current_job().headers.get("request_id")]

    @app.task(name="t.fails", retries=0)
    def fails() -> None:
        raise ValueError("no")

    now = who.delay(1)
    later = who.enqueue((2,), delay_s=0.05)
    mapped = who.map([3, 4])
    assert [j.headers for j in mapped] == [{"request_id": "req-1"}] * 2

    async def via_aio() -> str:
        async with AsyncProducer(app) as producer:
            return (await producer.enqueue("t.who", (5,))).id

    aio_id = asyncio.run(via_aio())
    bad = fails.delay()
    jobs = [now, later, *mapped, app.job(aio_id)]
    assert {j.id for j in jobs if j} | {bad.id} == {i for i, created in mw.enqueued if created}
    with running(app):
        assert [j.result(5) for j in jobs if j] == [[n, "req-1"] for n in range(1, 6)]
        with pytest.raises(JobFailed):
            bad.result(5)
    assert sorted(i for i, _, _ in mw.executed) == sorted([*(j.id for j in jobs if j), bad.id])
    assert mw.dead == [bad.id] and now.headers == {"request_id": "req-1"}


def test_failing_middleware_loses_no_job(app: App) -> None:
    class Flaky:
        def before_enqueue(self, envelope: Envelope) -> Envelope:
            raise RuntimeError("producer side")

        def after_enqueue(self, job: Job[Any]) -> None:
            raise RuntimeError("producer side, after")

        def after_execute(self, job: JobContext, outcome: Outcome) -> None:
            raise RuntimeError("worker side")

    app.add_middleware(Flaky())

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    jobs = [add.delay(1, 2), *add.map([(3, 4)])]
    with running(app):
        assert [j.result(5) for j in jobs] == [3, 7]


def test_context_set_in_before_execute_reaches_async_tasks(app: App) -> None:
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")

    class Tenant:
        def before_execute(self, job: JobContext) -> None:
            tenant.set(job.headers.get("tenant", "none"))

        def after_execute(self, job: JobContext, outcome: Outcome) -> None:
            tenant.set("none")

    app.add_middleware(Tenant())

    @app.task(name="t.async_tenant")
    async def async_tenant() -> str:
        await asyncio.sleep(0)
        return tenant.get()

    @app.task(name="t.sync_tenant")
    def sync_tenant() -> str:
        return tenant.get()

    jobs = [async_tenant.options(headers={"tenant": "acme"}).delay(),
            sync_tenant.options(headers={"tenant": "globex"}).delay(), sync_tenant.delay()]
    with running(app, concurrency=1):
        assert [j.result(5) for j in jobs] == ["acme", "globex", "none"]
