"""``task.delay_on_commit`` in the core, without Django: it queues through the App's commit
hook (``App.use_commit_hook``), checks the call at once, and refuses to run without a hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisq import App, ConfigError


def make_app(client: redis.Redis) -> tuple[App, list[Callable[[], Any]]]:
    app = App("redis://unused")
    app._client = client
    pending: list[Callable[[], Any]] = []
    app.use_commit_hook(pending.append)  # a toy transaction: the test plays the commit
    return app, pending


def test_the_job_is_queued_by_the_hook_not_before(fake_redis: redis.Redis) -> None:
    app, pending = make_app(fake_redis)

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    assert add.delay_on_commit(1, b=2) is None
    assert app.queue("default").depth() == 0 and len(pending) == 1
    pending.pop()()
    assert app.queue("default").depth() == 1


def test_enqueue_on_commit_carries_the_enqueue_options(fake_redis: redis.Redis) -> None:
    app, pending = make_app(fake_redis)
    task = app.task(name="t.echo")(lambda x: x)
    task.enqueue_on_commit((1,), job_id="order-7", queue="high")
    pending.pop()()
    job = app.job("order-7")
    assert job is not None and job.queue == "high"


def test_a_bad_call_fails_at_once_and_registers_nothing(fake_redis: redis.Redis) -> None:
    app, pending = make_app(fake_redis)
    task = app.task(name="t.one")(lambda x: x)
    with pytest.raises(TypeError):
        task.delay_on_commit(1, 2)
    assert pending == []


def test_rollback_means_the_callback_is_never_run(fake_redis: redis.Redis) -> None:
    app, pending = make_app(fake_redis)
    task = app.task(name="t.one")(lambda x: x)
    task.delay_on_commit(1)
    pending.clear()  # the toy transaction rolled back
    assert app.queue("default").depth() == 0


def test_without_a_hook_it_refuses_instead_of_queueing_now(fake_redis: redis.Redis) -> None:
    app = App("redis://unused")
    app._client = fake_redis
    task = app.task(name="t.one")(lambda x: x)
    with pytest.raises(ConfigError, match="commit hook"):
        task.delay_on_commit(1)
    assert app.queue("default").depth() == 0
