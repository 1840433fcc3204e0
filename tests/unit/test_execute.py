"""The pure step of the worker: what ``execute`` makes of every way a task can end, the retry
policy, hooks and time limits. No Redis is involved: the app is never connected."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from redisq import App, Retry, current_job
from redisq.execution import AsyncRunner, JobTimeLimit, TimeLimiter, execute, failure_outcome
from redisq.job import JobContext
from redisq.model import Envelope, Outcome


@pytest.fixture
def app() -> App:
    return App("redis://127.0.0.1:1/0")  # never connected: execute talks to no Redis


def run(app: App, name: str, *args: Any, attempt: int = 1, **kw: Any) -> Outcome:
    env = Envelope("j1", name, list(args), dict(kw), "default", attempt, 0.0)
    ctx = JobContext(env.id, env.task, env.queue, env.attempt)
    return execute(app.tasks[name], env, ctx, app.hooks)


def test_success_records_result_json_and_duration(app: App) -> None:
    @app.task(name="t.add")
    def add(a: int, b: int = 0) -> dict:
        return {"sum": a + b, "job": current_job().id}

    out = run(app, "t.add", 2, b=3)
    assert out.status == "succeeded" and out.result == {"sum": 5, "job": "j1"}
    assert out.result_json == '{"sum":5,"job":"j1"}' and out.duration_s >= 0
    assert out.error_type == "" and out.retry_in_s == 0


def test_current_job_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError):
        current_job()


def test_bound_task_gets_its_context_first(app: App) -> None:
    @app.task(name="t.bound", bind=True)
    def bound(ctx: JobContext, x: int) -> list:
        return [ctx.id, ctx.attempt, x]

    assert run(app, "t.bound", 9, attempt=2).result == ["j1", 2, 9]


def test_exception_is_retried_with_growing_jittered_backoff(app: App) -> None:
    @app.task(name="t.bad", retries=5, retry_backoff_s=1.0, retry_backoff_cap_s=6.0)
    def bad() -> None:
        raise KeyError("missing")

    outs = [run(app, "t.bad", attempt=a) for a in range(1, 6)]
    assert all(o.status == "retrying" and o.error_type == "KeyError" for o in outs)
    assert "'missing'" in outs[0].error_message and "Traceback" in outs[0].traceback
    # attempt n waits uniform(c/2, c) with c = min(cap, base * 2**(n-1)): 1, 2, 4, 6, 6
    for out, ceiling in zip(outs, (1, 2, 4, 6, 6), strict=True):
        assert ceiling / 2 <= out.retry_in_s <= ceiling
    last = run(app, "t.bad", attempt=6)
    assert last.status == "dead" and last.retry_in_s == 0 and "KeyError" in last.traceback


def test_retry_delay_is_deterministic_with_a_seeded_rng(app: App) -> None:
    @app.task(name="t.r", retries=3, retry_backoff_s=2.0)
    def r() -> None: ...

    env = Envelope("j", "t.r", [], {}, "default", 2, 0.0)

    def seeded(attempt: int, base: float, cap: float) -> float:
        from redisq.backend.backoff import retry_delay_s

        return retry_delay_s(attempt, base, cap, random.Random(7))

    first = failure_outcome(r, env, ValueError("x"), 0.1, seeded)
    assert first.retry_in_s == failure_outcome(r, env, ValueError("x"), 0.1, seeded).retry_in_s
    assert 2.0 <= first.retry_in_s <= 4.0 and first.duration_s == 0.1


def test_retry_asks_for_its_own_delay(app: App) -> None:
    @app.task(name="t.later", retries=2, retry_backoff_s=100.0)
    def later(delay: float | None) -> None:
        raise Retry(delay_s=delay, reason="not ready")

    assert run(app, "t.later", 0.25).retry_in_s == 0.25
    assert run(app, "t.later", -5).retry_in_s == 0.0  # a negative delay means now
    default = run(app, "t.later", None)
    assert 50 <= default.retry_in_s <= 100 and default.error_message == "not ready"
    final = run(app, "t.later", 0.25, attempt=3)  # Retry cannot outlive the retries budget
    assert final.status == "dead" and final.error_type == "Retry"


def test_last_attempt_fails_without_dead_letter(app: App) -> None:
    @app.task(name="t.nodl", retries=0, dead_letter=False)
    def nodl() -> None:
        raise RuntimeError("no")

    out = run(app, "t.nodl")
    assert out.status == "failed" and out.error_message == "no"


def test_unjsonable_result_fails_the_attempt(app: App) -> None:
    @app.task(name="t.nan", retries=0)
    def nan() -> float:
        return float("nan")

    @app.task(name="t.set", retries=0)
    def aset() -> set:
        return {1}

    assert run(app, "t.nan").status == "dead"
    # (The error arguments get too: a TypeError that says what JSON cannot carry.)
    assert run(app, "t.set").error_type == "SerializationError"
    assert "set cannot be carried as JSON" in run(app, "t.set").error_message


def test_system_exit_in_a_task_is_its_error_not_the_workers(app: App) -> None:
    @app.task(name="t.exit", retries=1)
    def leave() -> None:
        sys.exit(3)

    out = run(app, "t.exit")
    assert out.status == "retrying" and out.error_type == "SystemExit"


def test_hook_order_and_arguments(app: App) -> None:
    calls: list[tuple] = []
    app.before_job(lambda ctx: calls.append(("before", ctx.id, current_job().id)))
    app.on_failure(lambda ctx, exc: calls.append(("failure", type(exc).__name__)))
    app.after_job(lambda ctx, out: calls.append(("after", out.status)))

    @app.task(name="t.ok")
    def ok() -> int:
        calls.append(("task",))
        return 1

    @app.task(name="t.ko", retries=0)
    def ko() -> None:
        calls.append(("task",))
        raise ValueError("ko")

    run(app, "t.ok")
    assert calls == [("before", "j1", "j1"), ("task",), ("after", "succeeded")]
    calls.clear()
    run(app, "t.ko")
    assert calls == [("before", "j1", "j1"), ("task",), ("failure", "ValueError"),
                     ("after", "dead")]


def test_failing_after_and_failure_hooks_change_nothing(app: App) -> None:
    seen: list[str] = []
    app.on_failure(lambda ctx, exc: 1 / 0)
    app.on_failure(lambda ctx, exc: seen.append("second failure hook"))
    app.after_job(lambda ctx, out: 1 / 0)
    app.after_job(lambda ctx, out: seen.append(f"second after hook: {out.status}"))

    @app.task(name="t.ok")
    def ok() -> str:
        return "fine"

    @app.task(name="t.ko", retries=1)
    def ko() -> None:
        raise ValueError("ko")

    assert run(app, "t.ok").status == "succeeded"
    failed = run(app, "t.ko")
    assert failed.status == "retrying" and failed.error_type == "ValueError"
    assert seen == ["second after hook: succeeded", "second failure hook",
                    "second after hook: retrying"]


def test_failing_before_hook_is_the_attempts_error(app: App) -> None:
    ran: list[bool] = []
    app.before_job(lambda ctx: {}["db"])

    @app.task(name="t.ok", retries=1)
    def ok() -> None:
        ran.append(True)

    out = run(app, "t.ok")
    assert out.status == "retrying" and out.error_type == "KeyError" and not ran


@pytest.fixture
def enforcer() -> Iterator[TimeLimiter]:
    """A limiter enforced every 20 ms by a thread, as the worker's supervisor does."""
    limiter, stop = TimeLimiter(), threading.Event()

    def loop() -> None:
        while not stop.wait(0.02):
            limiter.enforce()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield limiter
    stop.set()
    thread.join(2)


def test_time_limit_stops_python_code(app: App, enforcer: TimeLimiter) -> None:
    after: list[str] = []
    app.after_job(lambda ctx, out: after.append(out.error_type))

    @app.task(name="t.spin", timeout_s=0.1, retries=1)
    def spin() -> None:
        try:
            while True:
                pass
        except Exception:  # a task's broad except must not swallow the time limit
            pass

    env = Envelope("j1", "t.spin", [], {}, "default", 1, 0.0)
    started = time.monotonic()
    out = execute(spin, env, JobContext("j1", "t.spin", "default", 1), app.hooks, enforcer)
    assert out.status == "retrying" and out.error_type == "JobTimeout"
    assert out.error_message == "exceeded timeout_s=0.1" and time.monotonic() - started < 2
    assert after == ["JobTimeout"]
    assert issubclass(JobTimeLimit, BaseException) and not issubclass(JobTimeLimit, Exception)


def test_time_limiter_fires_once_per_overdue_thread_on_its_clock() -> None:
    now = [100.0]
    limiter = TimeLimiter(clock=lambda: now[0])
    caught: list[str] = []
    armed, done = threading.Event(), threading.Event()

    def job() -> None:
        limiter.watch(5.0)
        armed.set()
        try:
            while not done.is_set():
                time.sleep(0.001)
        except JobTimeLimit:
            caught.append("limit")
        finally:
            limiter.unwatch()

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    armed.wait(2)
    assert limiter.enforce() == 0  # not due yet
    now[0] += 5.0
    assert limiter.enforce() == 1 and limiter.enforce() == 0  # once
    thread.join(2)
    assert caught == ["limit"]
    limiter.watch(None)  # no timeout: nothing to watch
    assert limiter.enforce() == 0


def test_finished_job_is_not_interrupted_later(app: App, enforcer: TimeLimiter) -> None:
    @app.task(name="t.quick", timeout_s=0.05)
    def quick() -> int:
        return 1

    env = Envelope("j1", "t.quick", [], {}, "default", 1, 0.0)
    ctx = JobContext("j1", "t.quick", "default", 1)
    assert execute(quick, env, ctx, app.hooks, enforcer).status == "succeeded"
    time.sleep(0.15)  # past the deadline: this thread must not receive JobTimeLimit now
    assert enforcer.enforce() == 0


def test_async_task_with_and_without_a_runner(app: App) -> None:
    @app.task(name="t.aadd")
    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @app.task(name="t.asleep", timeout_s=0.05, retries=0)
    async def asleep() -> None:
        await asyncio.sleep(5)

    assert aadd.is_async and run(app, "t.aadd", 1, 2).result == 3
    assert run(app, "t.asleep").error_type == "JobTimeout"
    runner = AsyncRunner()
    try:
        for name, args, expect in (("t.aadd", [4, 5], "succeeded"), ("t.asleep", [], "dead")):
            env = Envelope("j", name, args, {}, "default", 1, 0.0)
            out = execute(app.tasks[name], env, JobContext("j", name, "default", 1), app.hooks,
                          runner=runner)
            assert out.status == expect
    finally:
        runner.close()
