"""What a job record keeps (fakeredis): the message lives in the queue only while the job
waits; a finished record keeps its result and a bounded summary of the arguments, a failed one
the whole message (``args_summary_bytes``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from redisq import App
from redisq.backend import keys
from redisq.backend.records import args_summary
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Outcome


@pytest.fixture
def app(fake_redis: redis.Redis) -> App:
    application = App("redis://127.0.0.1:1/0")
    application._client = fake_redis
    return application


def finish(app: App, status: str, **outcome: Any) -> dict[str, Any]:
    """Reserve the next message of 'default', settle it; the record as read back (from its
    key, or a done bucket)."""
    consumer = Consumer(app.client, ["default"], consumer_id="c1", mark_jobs="w1")
    (msg,) = consumer.reserve(1, 0)
    env = Envelope.from_dict(json.loads(msg.body))
    app.records.settle_many([app.records.settle_call(consumer.id, msg, env,
                                                     Outcome(status, **outcome), "w1",
                                                     app.serializer.dumps)])
    return app.records.get("default", env.id)


def test_a_queued_record_does_not_copy_the_message(app: App) -> None:
    job = app.enqueue("t.x", args=("a" * 500,))
    stored = app.client.hgetall(keys.job("default", job.id))
    assert set(stored) == {b"status", b"task", b"enqueued_at"}
    assert app.client.llen(keys.pending("default")) == 1  # the one copy


def test_a_succeeded_record_keeps_the_result_and_a_bounded_summary(app: App) -> None:
    job = app.enqueue("t.x", args=("é" * 100, 7), kwargs={"k": True})
    stored = finish(app, "succeeded", result_json="42")
    assert "message" not in stored and stored["result"] == "42"
    summary = stored["args"]
    assert len(summary.encode()) <= 48 and summary.startswith('["éé') and summary.endswith("…")
    info = job.info()
    assert info["status"] == "succeeded" and info["progress"] == "1" and job.result(1) == 42


def test_a_failed_record_keeps_the_whole_message_for_inspection(app: App) -> None:
    app.enqueue("t.x", args=("a" * 500,))
    stored = finish(app, "failed", error_type="E", error_message="boom")
    assert json.loads(stored["message"])["args"] == ["a" * 500]


@pytest.mark.parametrize(("limit", "field"), [(0, None), (-1, "message")])
def test_the_summary_is_a_setting(fake_redis: redis.Redis, limit: int, field: str | None) -> None:
    app = App("redis://127.0.0.1:1/0", args_summary_bytes=limit)
    app._client = fake_redis
    app.enqueue("t.x", args=(1, 2))
    stored = finish(app, "succeeded")
    assert "args" not in stored
    assert (field in stored) if field else ("message" not in stored)


def test_summary_text() -> None:
    env = Envelope(id="i", task="t", args=[1, "two"], kwargs={"k": None}, queue="q")
    assert args_summary(env, 48) == '[1,"two"] {"k":null}'
    assert args_summary(env, 8) == '[1,"t…'  # 8 bytes, the ellipsis included
    assert args_summary(Envelope(id="i", task="t", args=[], kwargs={}, queue="q"), 48) is None
