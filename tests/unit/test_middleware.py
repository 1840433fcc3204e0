"""Middleware around ``execute`` (no Redis) and around message building: order, the outcome
methods, what an error in each method does, ``before_enqueue``'s changes and their checks,
and that the job hooks are served by a middleware installed only when a hook is."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from redisq import App, current_job
from redisq.execution import execute
from redisq.job import JobContext
from redisq.limits import MAX_HEADERS_BYTES
from redisq.model import Envelope, Outcome


@pytest.fixture
def app() -> App:
    return App("redis://127.0.0.1:1/0")  # never connected


def run(app: App, name: str, attempt: int = 1, headers: dict | None = None) -> Outcome:
    env = Envelope("j1", name, [], {}, "default", attempt, 0.0, headers=headers or {})
    ctx = JobContext(env.id, env.task, env.queue, env.attempt, headers=env.headers)
    return execute(app.tasks[name], env, ctx, app.hooks)


class Recorder:
    def __init__(self, name: str, calls: list[tuple[Any, ...]]) -> None:
        self.name, self.calls = name, calls

    def before_execute(self, job: JobContext) -> None:
        self.calls.append((self.name, "before", job.id, current_job().id))

    def after_execute(self, job: JobContext, outcome: Outcome) -> None:
        self.calls.append((self.name, "after", outcome.status))

    def on_retry(self, job: JobContext, outcome: Outcome) -> None:
        self.calls.append((self.name, "retry", type(outcome.exception).__name__))

    def on_dead(self, job: JobContext, outcome: Outcome) -> None:
        self.calls.append((self.name, "dead", outcome.error_type))


def test_order_outer_first_in_reverse_after_and_outcome_methods(app: App) -> None:
    calls: list[tuple[Any, ...]] = []
    app.add_middleware(Recorder("outer", calls))
    app.add_middleware(Recorder("inner", calls))

    @app.task(name="t.ok")
    def ok() -> int:
        calls.append(("task",))
        return 1

    @app.task(name="t.ko", retries=1)
    def ko() -> None:
        raise KeyError("k")

    assert run(app, "t.ok").status == "succeeded"
    assert calls == [("outer", "before", "j1", "j1"), ("inner", "before", "j1", "j1"),
                     ("task",), ("inner", "after", "succeeded"), ("outer", "after", "succeeded")]
    calls.clear()
    run(app, "t.ko")
    assert calls[2:] == [("inner", "after", "retrying"), ("outer", "after", "retrying"),
                         ("inner", "retry", "KeyError"), ("outer", "retry", "KeyError")]
    calls.clear()
    run(app, "t.ko", attempt=2)
    assert calls[-2:] == [("inner", "dead", "KeyError"), ("outer", "dead", "KeyError")]


def test_before_execute_error_fails_the_attempt_and_after_execute_still_runs(app: App) -> None:
    ran: list[str] = []
    seen: list[str] = []

    class NoDatabase:
        def before_execute(self, job: JobContext) -> None:
            raise ConnectionError("database down")

        def after_execute(self, job: JobContext, outcome: Outcome) -> None:
            seen.append(outcome.error_type)

    app.add_middleware(NoDatabase())

    @app.task(name="t.uses_db", retries=2)
    def uses_db() -> None:
        ran.append("task")

    out = run(app, "t.uses_db")
    assert out.status == "retrying" and out.error_type == "ConnectionError"
    assert "database down" in out.error_message and ran == [] and seen == ["ConnectionError"]


def test_errors_after_the_attempt_are_logged_and_change_nothing(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    later: list[str] = []

    class Broken:
        def after_execute(self, job: JobContext, outcome: Outcome) -> None:
            raise RuntimeError("after")

        def on_dead(self, job: JobContext, outcome: Outcome) -> None:
            raise RuntimeError("dead")

    class Fine:
        def on_dead(self, job: JobContext, outcome: Outcome) -> None:
            later.append(outcome.status)

    app.add_middleware(Fine())
    app.add_middleware(Broken())  # runs first in the reverse order

    @app.task(name="t.ok")
    def ok() -> str:
        return "fine"

    @app.task(name="t.ko", retries=0)
    def ko() -> None:
        raise ValueError("ko")

    with caplog.at_level(logging.ERROR, "redisq.middleware"):
        assert run(app, "t.ok").status == "succeeded"
        assert run(app, "t.ko").status == "dead"
    assert later == ["dead"]
    assert "job=j1 middleware Broken.after_execute failed" in caplog.text
    assert "Broken.on_dead failed" in caplog.text


def test_no_middleware_means_an_empty_falsy_list_until_a_hook(app: App) -> None:
    assert not app.hooks.middleware
    app.on_startup(lambda worker: None)  # not a job hook: still nothing per job
    assert not app.hooks.middleware
    app.before_job(lambda ctx: None)
    app.after_job(lambda ctx, out: None)
    assert len(app.hooks.middleware) == 1  # one middleware serves every job hook
    with pytest.raises(TypeError, match="none of the middleware methods"):
        app.add_middleware(object())


def test_headers_reach_current_job(app: App) -> None:
    @app.task(name="t.h")
    def h() -> dict:
        return current_job().headers

    assert run(app, "t.h", headers={"request_id": "r"}).result == {"request_id": "r"}


def prepare(app: App, name: str = "t.add", **options: Any) -> Envelope:
    return app.prepare(name, (1, 2), None, None, None, options or None).env


def test_before_enqueue_adds_headers_in_order_and_a_failure_keeps_the_job(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    class Tag:
        def __init__(self, key: str) -> None:
            self.key = key

        def before_enqueue(self, envelope: Envelope) -> Envelope:
            return replace(envelope, headers={**envelope.headers, self.key: len(envelope.headers)})

    class Broken:
        def before_enqueue(self, envelope: Envelope) -> Envelope:
            raise RuntimeError("broken producer middleware")

    class Bad:
        def before_enqueue(self, envelope: Envelope) -> Envelope:
            return replace(envelope, headers={"x": "y" * MAX_HEADERS_BYTES})

    class Renames:
        def before_enqueue(self, envelope: Envelope) -> Envelope:
            return replace(envelope, id="stolen")

    class Untouched:
        def before_enqueue(self, envelope: Envelope) -> None:
            return None

    for mw in (Tag("a"), Broken(), Bad(), Renames(), Untouched(), Tag("b")):
        app.add_middleware(mw)
    with caplog.at_level(logging.ERROR, "redisq.middleware"):
        env = prepare(app, headers={"caller": "c"})
    assert env.headers == {"caller": "c", "a": 1, "b": 2} and env.id != "stolen"
    assert caplog.text.count("queued without its change") == 3
    message = app.prepare("t.add", (1, 2), None, None, None).message
    assert b'"headers":{"a":0,"b":1}' in message  # the template path steps aside for middleware


def test_eager_jobs_carry_options_headers_and_middleware() -> None:
    app = App("redis://127.0.0.1:1/0", eager=True)
    seen: list[tuple[str, Any]] = []

    class Stamp:
        def before_enqueue(self, envelope: Envelope) -> Envelope:
            return replace(envelope, headers={**envelope.headers, "stamp": 1})

        def before_execute(self, job: JobContext) -> None:
            seen.append(("before", job.headers))

        def on_dead(self, job: JobContext, outcome: Outcome) -> None:
            seen.append(("dead", type(outcome.exception).__name__))

    app.add_middleware(Stamp())
    attempts: list[int] = []

    @app.task(name="t.eager", retries=3)
    def eager_task(fail: bool) -> dict:
        attempts.append(current_job().attempt)
        if fail:
            raise KeyError("no")
        return current_job().headers

    job = eager_task.options(headers={"r": "x"}).delay(False)
    assert job.result() == {"r": "x", "stamp": 1} and job.headers == {"r": "x", "stamp": 1}
    attempts.clear()
    with pytest.raises(KeyError):  # eager_raise: the task's own exception, after 1 attempt
        eager_task.options(retries=0).delay(True)
    assert attempts == [1] and seen[-1] == ("dead", "KeyError")
