"""Jobs without a server process: the pure execute step, retry policy, enqueue rules, locks."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from redisq import App, DuplicateJob, Retry, SerializationError, current_job
from redisq.execute import JobTimeLimit, TimeLimiter, execute, failure_outcome
from redisq.job import Envelope, JobContext
from redisq.locks import Lock
from redisq.wire import wire_for


def make_app(r: redis.Redis) -> App:
    app = App("redis://unused")
    app._client = r
    return app


def env_for(task_name: str, attempt: int = 1, args: list | None = None) -> Envelope:
    return Envelope("j1", task_name, args or [], {}, "default", attempt, 0.0)


def ctx(env: Envelope) -> JobContext:
    return JobContext(env.id, env.task, env.queue, env.attempt)


def test_execute_success_and_hooks(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    calls: list[str] = []
    app.before_job(lambda c: calls.append("before"))
    app.after_job(lambda c, o: calls.append(f"after:{o.status}"))

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        assert current_job().id == "j1"
        return a + b

    out = execute(add, env_for("t.add", args=[2, 3]), ctx(env_for("t.add")), app.hooks)
    assert (out.status, out.result, out.result_json) == ("succeeded", 5, "5")
    assert calls == ["before", "after:succeeded"]


def test_failure_retries_then_dies(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    failures: list[str] = []
    app.on_failure(lambda c, exc: failures.append(type(exc).__name__))
    app.on_failure(lambda c, exc: 1 / 0)  # a broken hook must not break the worker

    @app.task(name="t.bad", retries=2, retry_backoff_s=1.0)
    def bad() -> None:
        raise KeyError("missing")

    first = execute(bad, env_for("t.bad", 1), ctx(env_for("t.bad")), app.hooks)
    assert first.status == "retrying" and 0.5 <= first.retry_in_s <= 1.0
    assert first.error_type == "KeyError" and "KeyError" in first.traceback
    last = execute(bad, env_for("t.bad", 3), ctx(env_for("t.bad")), app.hooks)
    assert last.status == "dead" and failures == ["KeyError", "KeyError"]


def test_retry_asks_its_delay_and_dead_letter_off(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.later", retries=1, dead_letter=False)
    def later() -> None:
        raise Retry(delay_s=42)

    env = env_for("t.later")
    assert failure_outcome(later, env, Retry(delay_s=42), 0.0).retry_in_s == 42
    assert execute(later, env_for("t.later", 2), ctx(env), app.hooks).status == "failed"


def test_time_limit_stops_python_code(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.spin", timeout_s=0.2, retries=0)
    def spin() -> None:
        while True:
            pass

    limiter = TimeLimiter()
    import threading

    stop = threading.Event()

    def enforce() -> None:
        while not stop.wait(0.02):
            limiter.enforce()

    threading.Thread(target=enforce, daemon=True).start()
    started = time.monotonic()
    out = execute(spin, env_for("t.spin"), ctx(env_for("t.spin")), app.hooks, limiter)
    stop.set()
    assert out.status == "dead" and out.error_type == "JobTimeout"
    assert time.monotonic() - started < 2
    assert issubclass(JobTimeLimit, BaseException) and not issubclass(JobTimeLimit, Exception)


def test_async_task_and_its_timeout(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.aadd")
    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @app.task(name="t.asleep", timeout_s=0.05, retries=0)
    async def asleep() -> None:
        await asyncio.sleep(5)

    assert execute(aadd, env_for("t.aadd", args=[1, 2]), ctx(env_for("t.aadd")),
                   app.hooks).result == 3
    assert execute(asleep, env_for("t.asleep"), ctx(env_for("t.asleep")),
                   app.hooks).error_type == "JobTimeout"


def test_unjsonable_result_is_the_tasks_error(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.obj", retries=0)
    def obj() -> object:
        return object()

    assert execute(obj, env_for("t.obj"), ctx(env_for("t.obj")), app.hooks).status == "dead"


def test_enqueue_is_one_round_trip_and_writes_a_record(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(0, 0)  # registers the queue name once per process
    wire = wire_for(fake_redis)
    sent: list[int] = []
    original = wire.execute
    wire.execute = lambda cmds: sent.append(len(cmds)) or original(cmds)  # type: ignore[method-assign]
    job = add.delay(1, 2)
    wire.execute = original  # type: ignore[method-assign]
    assert sent == [1]
    info = job.info()
    assert info["status"] == "queued" and info["task"] == "t.add" and info["attempts"] == "0"
    assert app.job(job.id).status == "queued"
    assert app.job("nope") is None


def test_enqueue_refuses_bad_calls_and_sends_nothing(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.one")
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        one.delay(1, 2)
    with pytest.raises(SerializationError):
        one.delay({1, 2})
    with pytest.raises(TypeError):
        app.enqueue("t.one", args="12")  # type: ignore[arg-type]
    assert fake_redis.llen("redisq:{default}:pending") == 0


def test_unique_by_returns_or_raises(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.batch", unique_by="project_id")
    def batch(project_id: int, rows: int = 0) -> None: ...

    @app.task(name="t.strict", unique_by=["project_id"], on_duplicate="raise")
    def strict(project_id: int) -> None: ...

    first = batch.delay(7, rows=10)
    again = batch.delay(project_id=7, rows=99)
    assert again.id == first.id and again.created is False
    assert batch.delay(8).id != first.id
    strict.delay(7)
    with pytest.raises(DuplicateJob):
        strict.delay(7)
    assert first.cancel() is True  # cancelling frees the key
    assert batch.delay(7).id != first.id


def test_same_job_id_while_queued_returns_it(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    a = app.enqueue("t.x", job_id="fixed")
    b = app.enqueue("t.x", job_id="fixed")
    assert a.id == b.id == "fixed" and b.created is False
    assert fake_redis.llen("redisq:{default}:pending") == 1


def test_map_bulk(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.sq")
    def sq(x: int) -> int:
        return x * x

    jobs = sq.map([1, (2,), ((3,), {})])
    assert len(jobs) == 3 and len({j.id for j in jobs}) == 3
    assert all(j.status == "queued" for j in jobs)
    assert fake_redis.llen("redisq:{default}:pending") == 3


def test_lock_lease(fake_redis: redis.Redis) -> None:
    first = Lock(fake_redis, "project:7", ttl_s=5, auto_renew=False)
    second = Lock(fake_redis, "project:7", ttl_s=5, auto_renew=False)
    assert first.acquire(wait_s=0) and not second.acquire(wait_s=0)
    fake_redis.delete(first.key)  # as if the lease ran out
    assert second.acquire(wait_s=0)
    assert first.release() is False  # must not free the new holder's lock
    assert second.locked() and second.extend() and second.release()
    with Lock(fake_redis, "p", ttl_s=1) as held:
        assert held.locked()
    assert not held.locked()


def test_cancel_takes_the_message_out_and_is_too_late_once_reserved(fake_redis: redis.Redis) -> None:
    from redisq.consumer import Consumer

    app = make_app(fake_redis)
    first, second = app.enqueue("t.x"), app.enqueue("t.x")
    later = app.enqueue("t.x", delay_s=60)
    assert first.cancel() and later.cancel()
    assert fake_redis.llen("redisq:{default}:pending") == 1
    assert fake_redis.zcard("redisq:{default}:delayed") == 0
    Consumer(fake_redis, ["default"]).reserve(1)  # a worker took the second one
    assert second.cancel() is False and second.status == "queued"
