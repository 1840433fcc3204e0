"""Message limits on every producer path (nesting depth, size) and the depth measure itself;
what workers do with messages beyond them is in tests/integration/test_poison.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from redisq import App, SerializationError, config
from redisq.aio import AsyncProducer
from redisq.backend import keys
from redisq.errors import ConfigError
from redisq.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_DEPTH,
    MessageTooDeep,
    MessageTooLarge,
    json_depth_exceeds,
    value_depth_exceeds,
)
from redisq.ops.cli import main

NOWHERE = "redis://127.0.0.1:1/0"  # refusals happen before any connection


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep, lists and objects alternating (``0``: a scalar)."""
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 == 0 else {"k": value}
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.fixture
def app(fake_redis: redis.Redis) -> App:
    application = App(NOWHERE, max_message_bytes=4096)
    application._client = fake_redis

    @application.task(name="t.take")
    def take(*args: Any, **kwargs: Any) -> None: ...

    return application


def test_the_defaults() -> None:
    assert MAX_DEPTH == 64 and DEFAULT_MAX_MESSAGE_BYTES == 1_048_576 == App().max_message_bytes
    assert config.load({}, {}).max_message_bytes == 1_048_576
    assert config.load({}, {"REDISQ_MAX_MESSAGE_BYTES": "2048"}).max_message_bytes == 2048
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="max_message_bytes"):
            config.load({}, {"REDISQ_MAX_MESSAGE_BYTES": bad})
    for bad_arg in (0, -5, True, 1.5):
        with pytest.raises(ValueError, match="max_message_bytes"):
            App(max_message_bytes=bad_arg)  # type: ignore[arg-type]
    assert issubclass(MessageTooDeep, SerializationError) and issubclass(MessageTooDeep, ValueError)
    assert issubclass(MessageTooLarge, SerializationError) and issubclass(MessageTooLarge, ValueError)


@pytest.mark.parametrize("job_id", [None, "my-id"])  # the template encoder, and the generic one
def test_enqueue_takes_64_levels_and_refuses_65(app: App, job_id: str | None) -> None:
    job = app.enqueue("t.take", args=(nested(MAX_DEPTH),), job_id=job_id)
    assert job.status == "queued"
    app.enqueue("t.take", kwargs={"x": nested(MAX_DEPTH)}, job_id=job_id and job_id + "2")
    for call in ({"args": (nested(MAX_DEPTH + 1),)}, {"kwargs": {"x": nested(MAX_DEPTH + 1)}},
                 {"args": (1, [nested(MAX_DEPTH)])}):
        with pytest.raises(MessageTooDeep, match="more than 64 levels deep"):
            app.enqueue("t.take", job_id=job_id, **call)
    assert app.client.llen(keys.pending("default")) == 2  # nothing refused was queued


def test_task_delay_and_prepare_refuse_too_deep_and_too_large(app: App) -> None:
    take = app.tasks["t.take"]
    take.delay(nested(MAX_DEPTH))
    with pytest.raises(MessageTooDeep):
        take.delay(nested(100_000))  # refused cheaply, not a RecursionError
    with pytest.raises(MessageTooLarge, match="larger than max_message_bytes=4,096"):
        take.delay("x" * 4096)
    with pytest.raises(MessageTooLarge):
        app.prepare("t.take", ["x" * 5000], None, None, None)
    assert app.client.llen(keys.pending("default")) == 1


def test_strings_full_of_brackets_are_not_nesting(app: App) -> None:
    tricky = ["[" * 200, "{" * 200, '\\"[[[[' * 50, "\\" * 30 + "[" * 100]
    app.tasks["t.take"].delay(*tricky)
    assert json.loads(app.client.lindex(keys.pending("default"), 0))["args"] == tricky


def test_map_refuses_before_anything_is_queued(app: App) -> None:
    take = app.tasks["t.take"]
    assert len(take.map([(nested(MAX_DEPTH),), (1,)])) == 2
    with pytest.raises(MessageTooDeep):
        take.map([(1,), (nested(MAX_DEPTH + 1),)])
    with pytest.raises(MessageTooLarge):
        app.enqueue_many("t.take", [((1,), {}), (("x" * 5000,), {})])
    assert app.client.llen(keys.pending("default")) == 2


def test_publish_takes_64_levels_and_refuses_65_and_too_large(app: App) -> None:
    assert app.publish("events", nested(MAX_DEPTH)) == 0
    with pytest.raises(MessageTooDeep, match="64"):
        app.publish("events", nested(MAX_DEPTH + 1))
    with pytest.raises(MessageTooLarge):
        app.publish("events", {"blob": "x" * 5000})
    with pytest.raises(MessageTooLarge):
        app.publish("events", "x" * 5000, durable=True)
    assert app.client.exists(keys.stream("events")) == 0


def test_aio_producer_refuses_before_sending() -> None:
    application = App(NOWHERE, max_message_bytes=4096)

    async def main_() -> list[type[BaseException]]:
        caught = []
        async with AsyncProducer(application) as producer:
            for send in (lambda: producer.enqueue("t.any", args=(nested(MAX_DEPTH + 1),)),
                         lambda: producer.enqueue("t.any", args=("x" * 5000,)),
                         lambda: producer.publish("events", nested(MAX_DEPTH + 1)),
                         lambda: producer.publish("events", "x" * 5000)):
                try:
                    await send()
                except Exception as exc:  # a connection error here would mean it tried to send
                    caught.append(type(exc))
        return caught

    assert asyncio.run(main_()) == [MessageTooDeep, MessageTooLarge, MessageTooDeep,
                                    MessageTooLarge]


def cli(*args: str, **env: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": NOWHERE, **env},
                              catch_exceptions=False)


def test_cli_enqueue_and_publish_refuse_with_one_clear_line() -> None:
    too_deep = json.dumps([nested(MAX_DEPTH + 1)])
    out = cli("enqueue", "t.any", "--args", too_deep)
    assert out.exit_code == 1 and "MessageTooDeep" in out.output and "64 levels" in out.output
    out = cli("publish", "events", json.dumps(nested(MAX_DEPTH + 1)))
    assert out.exit_code == 1 and "MessageTooDeep" in out.output
    # The setting reaches the App the CLI builds: 2 KiB is refused under a 1 KiB cap.
    out = cli("enqueue", "t.any", "--args", json.dumps(["x" * 2048]),
              REDISQ_MAX_MESSAGE_BYTES="1024")
    assert out.exit_code == 1 and "max_message_bytes=1,024" in out.output
    out = cli("publish", "events", json.dumps("x" * 2048), REDISQ_MAX_MESSAGE_BYTES="1024")
    assert out.exit_code == 1 and "MessageTooLarge" in out.output
    # Deeper than the JSON parser goes: a usage error, not a traceback.
    out = cli("enqueue", "t.any", "--args", "[" * 100_000 + "]" * 100_000)
    assert out.exit_code == 2 and "not valid JSON" in out.output


def test_cli_applies_the_setting_to_the_app_it_loads() -> None:
    from redisq.ops.cli import apply_settings

    application = App(NOWHERE, max_message_bytes=5000)
    assert apply_settings(application, config.load({}, {})).max_message_bytes == 5000
    assert apply_settings(application, config.load(
        {}, {"REDISQ_MAX_MESSAGE_BYTES": "777"})).max_message_bytes == 777


# -- the depth measure ------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.text(alphabet='[]{}"\\k', max_size=3), kids, max_size=3),
    max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=8))
def test_json_depth_matches_the_real_depth(value: Any, limit: int) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    assert json_depth_exceeds(data, limit) == (depth_of(value) > limit)
    assert value_depth_exceeds(value, limit) == (depth_of(value) > limit)


@pytest.mark.parametrize("depth", [0, 1, 63, 64, 65, 66, 67, 500])
def test_json_depth_at_the_edges(depth: int) -> None:
    for data in (json.dumps(nested(depth)).encode(), b"[" * depth + b"]" * depth):
        assert json_depth_exceeds(data, 64) == (depth > 64)
    assert value_depth_exceeds(nested(depth), 64) == (depth > 64)


def test_json_depth_of_text_that_is_not_json() -> None:
    assert json_depth_exceeds(b"[" * 100_000, 66)  # would have to go too deep to fail
    assert not json_depth_exceeds(b"][" * 100, 66)  # fails to parse at once: the parser says so


# -- what workers and readers do with stored values -------------------------------------------
@pytest.mark.parametrize(("data", "reason"), [
    ({"id": "a", "task": "t", "queue": 7}, "'queue' must be str"),
    ({"id": "a", "task": "t", "enqueued_at": "now"}, "'enqueued_at' must be int or float"),
    ({"id": "a", "task": "t", "enqueued_at": True}, "'enqueued_at'"),
    ({"id": "a", "task": "t", "unique": 5}, "'unique' must be str or NoneType"),
    ({"id": "a", "task": "t", "attempt": True}, "'attempt' must be int"),
    ({"id": "a", "task": "t", "attempt": 0}, "'attempt' must be >= 1"),
    ({"id": "a", "task": "t", "attempt": -3}, "'attempt' must be >= 1"),
    ({"id": "", "task": "t"}, "must not be empty"),
    ({"id": "a", "task": ""}, "must not be empty"),
    ({"id": 'a"b', "task": "t"}, "quotes or backslashes"),
])
def test_envelope_refuses_wrong_types_and_values(data: dict[str, Any], reason: str) -> None:
    from redisq.model import BadMessage, Envelope

    with pytest.raises(BadMessage, match=reason):
        Envelope.from_dict(data)


def test_readers_of_stored_values_survive_poison(fake_redis: redis.Redis) -> None:
    from redisq import JobFailed
    from redisq.backend.records import _unique_and_ttl_of, complete_record
    from redisq.backend.registry import Registry
    from redisq.job import final_result
    from redisq.ops.stats import periodic_index

    deep = b"[" * 100_000 + b"]" * 100_000
    assert complete_record({b"status": b"queued", b"message": deep}, "q", "j")["status"] == "queued"
    assert _unique_and_ttl_of(deep, 5.0) == (None, 5.0)
    assert _unique_and_ttl_of(b"\xff", 5.0) == (None, 5.0)
    with pytest.raises(JobFailed) as failed:
        final_result("j", {"status": "succeeded", "result": deep.decode()})
    assert failed.value.error_type == "BadResult"
    fake_redis.zadd(keys.WORKERS, {"w1": 1})
    fake_redis.hset(keys.worker("w1"), mapping={"queues": deep, "loop_at": "1"})
    assert Registry(fake_redis).workers()[0]["queues"] == deep.decode()
    fake_redis.hset(keys.PERIODIC_INDEX, mapping={"deep": deep, "junk": b"\xff", "list": b"[1]",
                                                  "no-next": json.dumps({"name": "x"})})
    assert periodic_index(fake_redis) == []


def test_dead_entries_keep_the_message_byte_for_byte() -> None:
    from redisq.backend.dead import DEAD_HEAD_BYTES, dead_entry, dead_message

    for body in (b'{"id":"a"}', "é".encode(), b"\xff\xfe\x00", b"x" * 5000):
        entry = json.loads(dead_entry(body, "BadMessage", "why", keep_bytes=4096 * 2))
        assert dead_message(entry) == body and entry["message_bytes"] == len(body)
        assert ("message_b64" in entry) == (body == b"\xff\xfe\x00")
    big = json.loads(dead_entry(b"y" * 10_000, "MessageTooLarge", "why", keep_bytes=4096))
    assert big["message_truncated"] and dead_message(big) == b"y" * DEAD_HEAD_BYTES
    assert big["message_bytes"] == 10_000 and len(big["message_sha256"]) == 64


def test_requeue_dead_skips_what_cannot_run(app: App) -> None:
    from redisq.backend.dead import dead_entry

    good = b'{"id":"ok1","task":"t.take","args":[1]}'
    for entry in (b"not json", b"[" * 100_000, json.dumps({"message": 5}).encode(),
                  dead_entry(b"[" * 1000 + b"]" * 1000, "MessageTooDeep", "deep"),
                  dead_entry(b"\xff", "BadMessage", "utf-8"),
                  dead_entry(b"z" * 10_000, "MessageTooLarge", "big", keep_bytes=4096),
                  dead_entry(good, "ValueError", "failed")):
        app.client.lpush(keys.dead("default"), entry)
    assert app.requeue_dead("default") == 1
    (message,) = app.client.lrange(keys.pending("default"), 0, -1)
    assert json.loads(message)["id"] == "ok1" and app.client.llen(keys.dead("default")) == 6
