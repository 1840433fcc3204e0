"""Eager mode (``App(eager=True)`` / ``REDISQ_EAGER``): jobs run inline through the worker's
decode/execute/retry steps, with no Redis at all (the apps here point at a port where nothing
listens, and no test connects)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from redisq import App, ConfigError, JobContext, JobFailed, Retry, UnknownTask, current_job
from redisq.config import load
from redisq.errors import SerializationError
from redisq.limits import MessageTooLarge
from redisq.worker.prodcons import ProdconsWorker

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens: a test that touched Redis would fail


@pytest.fixture
def eager() -> Iterator[App]:
    app = App(NOWHERE, eager=True)
    yield app
    assert app._client is None, "eager mode must not connect to Redis"


def test_delay_returns_a_finished_job(eager: App) -> None:
    @eager.task
    def add(a: int, b: int) -> int:
        return a + b

    job = add.delay(2, 3)
    assert job.status == "succeeded" and job.result() == 5
    info = job.info()
    assert info["task"] == add.name and info["attempts"] == "1" and info["queue"] == "default"
    assert eager.job(job.id) is not None and eager.job(job.id).status == "succeeded"  # type: ignore[union-attr]
    assert eager.job("nope") is None


def test_arguments_and_results_make_the_json_round_trip(eager: App) -> None:
    seen: list[Any] = []

    @eager.task
    def keep(value: Any, *, key: Any = None) -> Any:
        seen.append((value, key))
        return (1, 2)

    job = keep.delay((1, 2), key={"a": (3,)})
    assert seen == [([1, 2], {"a": [3]})]  # what a worker would pass: tuples became lists
    assert job.result() == [1, 2]
    with pytest.raises(SerializationError):  # refused at enqueue, as in production
        keep.delay({1, 2})
    with pytest.raises(TypeError):  # a call the function cannot take
        keep.delay(1, 2)
    small = App(NOWHERE, eager=True, max_message_bytes=100)
    small.task(name="keep")(lambda value: value)
    with pytest.raises(MessageTooLarge):
        small.enqueue("keep", ["x" * 200])
    assert len(seen) == 1


def test_a_result_json_cannot_carry_fails_the_job(eager: App) -> None:
    @eager.task(retries=0)
    def returns_object() -> Any:
        return object()

    with pytest.raises(TypeError):
        returns_object.delay()


def test_retries_run_without_sleeping_and_are_counted(eager: App) -> None:
    attempts: list[int] = []

    @eager.task(retries=3, retry_backoff_s=30.0)
    def flaky() -> str:
        attempts.append(current_job().attempt)
        if len(attempts) == 2:
            raise Retry(delay_s=3600)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "done"

    started = time.monotonic()
    job = flaky.delay()
    assert time.monotonic() - started < 1.0  # 30 s + 1 h of delays skipped
    assert attempts == [1, 2, 3] and job.result() == "done"
    info = job.info()
    assert info["attempts"] == "3" and info["skipped_delays"] == "2"
    assert float(info["skipped_delay_s"]) >= 3600


def test_failures_raise_the_task_exception_after_the_retries(eager: App) -> None:
    calls: list[int] = []

    @eager.task(retries=2, retry_backoff_s=10.0)
    def broken() -> None:
        calls.append(current_job().attempt)
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        broken.delay()
    assert calls == [1, 2, 3]


@pytest.mark.parametrize(("dead_letter", "status"), [(True, "dead"), (False, "failed")])
def test_eager_raise_false_records_the_failure(dead_letter: bool, status: str) -> None:
    app = App(NOWHERE, eager=True, eager_raise=False)

    @app.task(retries=1, dead_letter=dead_letter)
    def broken() -> None:
        raise ValueError("bad input")

    job = broken.delay()
    assert job.status == status
    with pytest.raises(JobFailed) as err:
        job.result()
    assert err.value.error_type == "ValueError" and err.value.message == "bad input"
    assert "ValueError: bad input" in job.info()["traceback"]
    assert job.info()["attempts"] == "2"


def test_unknown_task_is_refused_like_a_worker_would(eager: App) -> None:
    with pytest.raises(UnknownTask, match="'nope'"):
        eager.enqueue("nope")
    quiet = App(NOWHERE, eager=True, eager_raise=False)
    job = quiet.enqueue("nope")
    assert job.status == "dead" and job.info()["error_type"] == "UnknownTask"


def test_bound_tasks_current_job_progress_and_hooks(eager: App) -> None:
    events: list[str] = []
    eager.before_job(lambda ctx: events.append(f"before {ctx.attempt}"))
    eager.after_job(lambda ctx, outcome: events.append(f"after {outcome.status}"))
    eager.on_failure(lambda ctx, exc: events.append(f"failure {type(exc).__name__}"))

    @eager.task(bind=True, retries=1)
    def bound(ctx: JobContext, n: int) -> str:
        assert current_job() is ctx
        ctx.progress(0.5, "half")
        if ctx.attempt == 1:
            raise OSError("first")
        return f"{ctx.task}:{n}"

    job = bound.delay(7)
    assert job.result() == f"{bound.name}:7"
    assert events == ["before 1", "failure OSError", "after retrying", "before 2",
                      "after succeeded"]
    with pytest.raises(RuntimeError):  # restored once the job is over
        current_job()


def test_nested_enqueue_runs_inline_too(eager: App) -> None:
    @eager.task
    def child(n: int) -> int:
        return current_job().attempt + n

    @eager.task
    def parent() -> list[Any]:
        me = current_job().id
        inner = child.delay(10)
        return [inner.result(), current_job().id == me]

    assert parent.delay().result() == [11, True]


def test_async_tasks_run_eagerly(eager: App) -> None:
    @eager.task
    async def double(n: int) -> int:
        return n * 2

    assert double.delay(21).result() == 42


def test_map_validates_every_call_before_running_any(eager: App) -> None:
    ran: list[int] = []

    @eager.task
    def one(n: int) -> int:
        ran.append(n)
        return n

    with pytest.raises(SerializationError):
        one.map([1, 2, {3}])
    assert ran == []
    assert [j.result() for j in one.map([1, 2, 3])] == [1, 2, 3]


def test_redisq_eager_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDISQ_EAGER", "1")
    assert App(NOWHERE).eager and not App(NOWHERE, eager=False).eager
    monkeypatch.setenv("REDISQ_EAGER", "maybe")
    with pytest.raises(ConfigError, match="eager"):
        App(NOWHERE)
    monkeypatch.delenv("REDISQ_EAGER")
    assert not App(NOWHERE).eager


def test_a_worker_refuses_an_eager_app(eager: App) -> None:
    with pytest.raises(ConfigError, match="eager"):
        ProdconsWorker(eager, load({}, {}))


def test_the_asyncio_producer_refuses_an_eager_app(eager: App) -> None:
    from redisq.aio import AsyncProducer

    with pytest.raises(ConfigError, match="no eager mode"):
        AsyncProducer(eager)


def test_timeout_s_holds_in_eager_mode_too() -> None:
    app = App(NOWHERE, eager=True, eager_raise=False)

    @app.task(retries=1, timeout_s=0.2)
    def spins() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # pure Python: stopped at its next bytecode
            pass

    @app.task(timeout_s=0.2)
    def quick() -> str:
        return "in time"

    started = time.monotonic()
    job = spins.delay()
    assert time.monotonic() - started < 2  # two attempts of 0.2 s, not two of 5 s
    assert job.status == "dead" and job.info()["error_type"] == "JobTimeout"
    assert job.info()["attempts"] == "2"
    assert quick.delay().result() == "in time"
    time.sleep(0.3)  # a finished job's time limit must not fire later in this thread
    with pytest.raises(JobFailed, match="JobTimeout"):
        job.result()
