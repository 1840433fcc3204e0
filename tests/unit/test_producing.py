"""The producer side on fakeredis (with Lua): what enqueue checks, sends and writes; unique
jobs; job messages; dead-letter requeues; locks."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from typing import Any

import pytest
import redis

from redisq import App, DuplicateJob, LockNotAcquired, SerializationError
from redisq.backend import keys
from redisq.backend.wire import wire_for
from redisq.broker.consumer import Consumer
from redisq.job import JobContext
from redisq.locks import Lock
from redisq.model import BadMessage, Envelope, Outcome
from tests.support.wait import wait_until


@pytest.fixture
def app(fake_redis: redis.Redis) -> App:
    application = App("redis://127.0.0.1:1/0")
    application._client = fake_redis
    return application


def settle(app: App, status: str, **outcome: Any) -> Envelope:
    """Play a worker's part for the next message of 'default': reserve it, then settle it."""
    consumer = Consumer(app.client, ["default"], consumer_id="c1", mark_jobs="w1")
    (msg,) = consumer.reserve(1, 0)
    env = Envelope.from_dict(json.loads(msg.body))
    call = app.records.settle_call(consumer.id, msg, env, Outcome(status, **outcome), "w1",
                                   app.serializer.dumps)
    app.records.settle_many([call])
    return env


# -- what enqueue refuses ---------------------------------------------------------------------
# (datetime, date, UUID and Decimal travel as text: tests/unit/test_json_types.py.)
@pytest.mark.parametrize("bad", [{1, 2}, b"raw", math.nan, -math.inf, object(), 1j,
                                 dt.timedelta(1), dt.time(1), {"nested": [frozenset()]}])
def test_unjsonable_arguments_are_refused_at_enqueue(app: App, fake_redis: redis.Redis,
                                                     bad: object) -> None:
    @app.task(name="t.any")
    def anything(*args: Any, **kwargs: Any) -> None: ...

    with pytest.raises(SerializationError) as info:
        anything.delay(bad)
    assert isinstance(info.value, TypeError)  # callers catching TypeError see it too
    with pytest.raises(SerializationError):
        anything.delay(x=bad)
    with pytest.raises(SerializationError):
        app.enqueue("not.registered.here", args=[bad])
    with pytest.raises(SerializationError):
        anything.map([1, bad])  # bulk: refused before anything is sent
    assert fake_redis.dbsize() <= 1  # at most the queue-name set; no message, no record
    assert fake_redis.llen(keys.pending("default")) == 0


def test_bad_calls_are_refused_before_sending(app: App, fake_redis: redis.Redis) -> None:
    @app.task(name="t.one")
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        one.delay()
    with pytest.raises(TypeError):
        one.delay(1, y=2)
    with pytest.raises(TypeError):
        app.enqueue("t.one", args=iter([1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        one.enqueue(args=(1,), queue="no spaces")
    with pytest.raises(TypeError):
        app.enqueue("t.one", args=[1], kwargs=[("x", 1)])  # type: ignore[arg-type]
    for name in ("", 5, None):
        with pytest.raises(TypeError):
            app.enqueue(name)  # type: ignore[arg-type]
    # reserve.lua finds the id in a message by a pattern: ids that would fool it are refused
    for job_id in ('a"b', "a\\b", "has space", "", 5, "x" * 201):
        with pytest.raises((ValueError, TypeError)):
            one.enqueue(args=(1,), job_id=job_id)  # type: ignore[arg-type]
    assert one.enqueue(args=(1,), job_id="report:2024-01.v2").id == "report:2024-01.v2"
    assert fake_redis.llen(keys.pending("default")) == 1


# -- job messages -----------------------------------------------------------------------------
def test_envelope_round_trip_and_defaults() -> None:
    env = Envelope("id1", "t.x", [1, "é"], {"k": None}, "q", 2, 12.5, "t.x:[1]")
    assert Envelope.from_dict(json.loads(json.dumps(env.to_dict()))) == env
    assert "unique" not in Envelope("id", "t", [], {}, "q").to_dict()
    minimal = Envelope.from_dict({"id": "a", "task": "t"})
    assert (minimal.args, minimal.kwargs, minimal.attempt, minimal.unique) == ([], {}, 1, None)
    assert env.next_attempt().attempt == 3 and env.attempt == 2


@pytest.mark.parametrize(("data", "reason"), [
    ([1, 2], "JSON object, got list"),
    ("text", "JSON object, got str"),
    (None, "JSON object, got NoneType"),
    ({"task": "t"}, "lacks the field 'id'"),
    ({"id": "a"}, "lacks the field 'task'"),
    ({"id": 5, "task": "t"}, "'id' must be str"),
    ({"id": "a", "task": ["t"]}, "'task' must be str"),
    ({"id": "a", "task": "t", "args": {"x": 1}}, "'args' must be list"),
    ({"id": "a", "task": "t", "args": None}, "'args' must be list"),
    ({"id": "a", "task": "t", "kwargs": [1]}, "'kwargs' must be dict"),
    ({"id": "a", "task": "t", "attempt": "2"}, "'attempt' must be int"),
])
def test_envelope_from_dict_says_what_is_wrong(data: object, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        Envelope.from_dict(data)
    assert issubclass(BadMessage, ValueError)


# -- unique keys ------------------------------------------------------------------------------
def test_unique_key_forms(app: App) -> None:
    @app.task(name="t.plain")
    def plain(a: int) -> None: ...

    @app.task(name="t.one", unique_by="project_id")
    def one(project_id: int, rows: int = 0, opts: dict | None = None) -> None: ...

    @app.task(name="t.two", unique_by=["b", "a"])
    def two(a: int, b: int = 5) -> None: ...

    @app.task(name="t.fn", unique_by=lambda user, **_: f"user-{user}")
    def fn(user: int, note: str = "") -> None: ...

    @app.task(name="t.dict", unique_by="opts")
    def by_dict(opts: dict) -> None: ...

    @app.task(name="t.typo", unique_by="projectid")
    def typo(project_id: int) -> None: ...

    assert plain.unique_key((1,), {}) is None
    assert one.unique_key((7,), {"rows": 1}) == one.unique_key((), {"project_id": 7}) == "t.one:[7]"
    assert one.unique_key((8,), {}) != one.unique_key((7,), {})
    assert two.unique_key((1,), {}) == "t.two:[5, 1]"  # defaults count, in unique_by's order
    assert fn.unique_key((3,), {"note": "x"}) == fn.unique_key((), {"user": 3}) == 't.fn:"user-3"'
    assert by_dict.unique_key(({"b": 1, "a": 2},), {}) == by_dict.unique_key(({"a": 2, "b": 1},), {})
    with pytest.raises(TypeError, match="projectid"):
        typo.unique_key((1,), {})


def test_unique_key_of_a_bound_task_skips_its_context(app: App) -> None:
    @app.task(name="t.bound", bind=True, unique_by="project_id")
    def bound(ctx: JobContext, project_id: int) -> int:
        return project_id

    assert bound.unique_key((7,), {}) == bound.unique_key((), {"project_id": 7}) == "t.bound:[7]"
    job = bound.delay(7)
    assert bound.delay(project_id=7).id == job.id


def test_unique_by_returns_the_queued_job_or_raises(app: App) -> None:
    @app.task(name="t.batch", unique_by="project_id")
    def batch(project_id: int, rows: int = 0) -> None: ...

    @app.task(name="t.strict", unique_by="project_id", on_duplicate="raise")
    def strict(project_id: int) -> None: ...

    first = batch.delay(7, rows=10)
    again = batch.delay(project_id=7, rows=99)
    assert (again.id, again.created, first.created) == (first.id, False, True)
    assert app.client.llen(keys.pending("default")) == 1
    held = strict.delay(7)
    with pytest.raises(DuplicateJob) as info:
        strict.delay(7)
    assert info.value.existing_id == held.id
    assert first.cancel() and batch.delay(7).id != first.id  # cancelling frees the key
    with pytest.raises(ValueError):
        app.task(name="t.bad", unique_by="x", on_duplicate="ignore")(lambda x: x)


def test_unique_key_is_free_again_once_the_job_ended(app: App) -> None:
    @app.task(name="t.batch", unique_by="project_id", retries=1)
    def batch(project_id: int) -> None: ...

    first = batch.delay(7)
    settle(app, "retrying", error_type="E", retry_in_s=60)  # still holds the key while waiting
    assert batch.delay(7).id == first.id
    waiting = app.client.zrange(keys.delayed("default"), 0, 0)[0]  # the retry's message
    app.client.delete(keys.delayed("default"))
    app.client.lpush(keys.pending("default"), waiting)
    settle(app, "succeeded")
    second = batch.delay(7)
    assert second.id != first.id and second.created


def test_a_finished_job_id_can_be_reused(app: App) -> None:
    first = app.enqueue("t.x", job_id="nightly")
    settle(app, "succeeded")
    assert first.status == "succeeded"
    again = app.enqueue("t.x", job_id="nightly")
    assert again.created and again.status == "queued" and "result" not in again.info()


# -- enqueue: one round trip, and the record it writes ------------------------------------------
class Counted:
    """Counts every command sent through the client and through the lean per-thread path."""

    def __init__(self, client: redis.Redis) -> None:
        self.commands: list[str] = []
        self.round_trips = 0
        self._wire = wire_for(client)
        self._client = client
        self._orig_wire = self._wire.execute
        self._orig_client = client.execute_command

    def __enter__(self) -> Counted:
        def wire_execute(cmds: Any) -> Any:
            self.round_trips += 1
            self.commands += [str(c[0]) for c in cmds]
            return self._orig_wire(cmds)

        def client_execute(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            self.commands.append(str(args[0]))
            return self._orig_client(*args, **kwargs)

        self._wire.execute = wire_execute  # type: ignore[method-assign]
        self._client.execute_command = client_execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._wire.execute = self._orig_wire  # type: ignore[method-assign]
        self._client.execute_command = self._orig_client  # type: ignore[method-assign]


@pytest.mark.parametrize("how", ["delay", "job_id"])
def test_enqueue_is_one_round_trip_and_writes_the_record(app: App, fake_redis: redis.Redis,
                                                         how: str) -> None:
    """delay() (a fresh id) is one MULTI/EXEC transaction; an enqueue with a caller's job id
    must look for an existing job first: the enqueue script. One round trip either way."""
    @app.task(name="t.add", queue="math")
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(0, 0)  # the first enqueue of a process also remembers the queue's name
    add.enqueue((0, 0), job_id="warm")  # and the first script call loads the script
    before = time.time()
    with Counted(fake_redis) as sent:
        job = add.delay(1, 2) if how == "delay" else add.enqueue((1, 2), job_id="given-id")
    expected = (["MULTI", "HSET", "LPUSH", "HINCRBY", "EXEC"] if how == "delay"
                else ["EVALSHA"])
    assert sent.commands == expected and sent.round_trips == 1
    info = job.info()
    assert {k: info[k] for k in ("id", "status", "task", "queue", "attempts")} == {
        "id": job.id, "status": "queued", "task": "t.add", "queue": "math", "attempts": "0"}
    assert before - 1 <= float(info["enqueued_at"]) <= time.time() + 1
    message = json.loads(fake_redis.lindex(keys.pending("math"), 0))  # empty kwargs left out
    assert message == {"id": job.id, "task": "t.add", "args": [1, 2],
                       "queue": "math", "attempt": 1, "enqueued_at": message["enqueued_at"]}
    assert "message" not in info  # the message lives in the queue only, not in the record
    assert app.queues() == ["math"] and app.job(job.id).queue == "math"
    assert fake_redis.hget(keys.stats("math"), "enqueued") == b"3"


def test_delayed_and_eta_jobs_wait_in_the_delayed_set(app: App, fake_redis: redis.Redis) -> None:
    soon = app.enqueue("t.x", delay_s=30)
    at = app.enqueue("t.x", eta=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60))
    past = app.enqueue("t.x", eta=time.time() - 10)  # already due: waits for the next promotion
    assert fake_redis.llen(keys.pending("default")) == 0
    assert fake_redis.zcard(keys.delayed("default")) == 3
    due = {j.id: float(j.info()["due_at"]) for j in (soon, at, past)}
    now = time.time()
    assert now + 28 < due[soon.id] < now + 32 and now + 58 < due[at.id] < now + 62
    assert app.queue("default").promote_due() == 1
    assert soon.status == "queued" and soon.cancel() and soon.status == "cancelled"


def test_requeued_dead_job_runs_afresh_and_can_be_cancelled(app: App) -> None:
    @app.task(name="t.x", retries=1)
    def x(word: str) -> None: ...

    job = x.delay("é")
    settle(app, "retrying", error_type="E", retry_in_s=0)
    app.queue("default").promote_due()
    env = settle(app, "dead", error_type="ValueError", error_message="boom")
    assert env.attempt == 2 and job.status == "dead"
    dead = json.loads(app.queue("default").dead_letters()[0])
    assert (dead["job_id"], dead["task"], dead["reason"]) == (job.id, "t.x", "boom")
    assert app.requeue_dead("default") == 1 and app.requeue_dead("default") == 0
    info = job.info()
    assert info["status"] == "queued" and info["attempts"] == "0"
    waiting = app.client.lindex(keys.pending("default"), 0)
    assert json.loads(waiting)["attempt"] == 1  # a fresh budget of attempts
    assert app.client.ttl(keys.job("default", job.id)) == -1  # kept until it ends again
    assert job.cancel() is True and app.client.llen(keys.pending("default")) == 0


def test_requeue_dead_by_id_and_limit_skips_malformed_entries(app: App) -> None:
    ids = [app.enqueue("t.x").id for _ in range(3)]
    for _ in ids:
        settle(app, "dead", error_type="E")
    app.client.lpush(keys.dead("default"), b"not json")
    assert app.requeue_dead("default", job_ids=[ids[1]]) == 1
    assert app.job(ids[1]).status == "queued" and app.job(ids[0]).status == "dead"
    assert app.requeue_dead("default", limit=1) == 1
    assert app.requeue_dead("default") == 1
    assert app.client.lrange(keys.dead("default"), 0, -1) == [b"not json"]  # kept to inspect


# -- locks ------------------------------------------------------------------------------------
def test_lock_acquire_release_extend(fake_redis: redis.Redis) -> None:
    first = Lock(fake_redis, "project:7", ttl_s=5, auto_renew=False)
    second = Lock(fake_redis, "project:7", ttl_s=5, auto_renew=False)
    assert first.acquire(wait_s=0) and first.locked()
    assert not second.acquire(wait_s=0) and not second.extend() and not second.release()
    assert fake_redis.get(first.key) == first.token.encode()  # the loser changed nothing
    fake_redis.pexpire(first.key, 200)
    assert first.extend() and fake_redis.pttl(first.key) > 4000
    assert first.release() and not first.locked() and second.acquire(wait_s=0)
    with pytest.raises(ValueError):
        Lock(fake_redis, "x", ttl_s=0)


def test_expired_holder_cannot_release_or_extend_the_next_holders_lock(
        fake_redis: redis.Redis) -> None:
    first = Lock(fake_redis, "job", ttl_s=0.05, auto_renew=False)
    assert first.acquire(wait_s=0)
    wait_until(lambda: not first.locked(), 2, what="the lease to expire")
    second = Lock(fake_redis, "job", ttl_s=5, auto_renew=False)
    assert second.acquire(wait_s=0)
    assert first.release() is False and first.extend() is False
    assert second.locked() and fake_redis.get(second.key) == second.token.encode()


def test_lock_waits_for_the_holder_and_context_manager(fake_redis: redis.Redis) -> None:
    holder = Lock(fake_redis, "w", ttl_s=5, auto_renew=False)
    holder.acquire(wait_s=0)
    with pytest.raises(LockNotAcquired), Lock(fake_redis, "w", ttl_s=5, wait_s=0.05):
        pass
    threading.Timer(0.1, holder.release).start()
    waiter = Lock(fake_redis, "w", ttl_s=5, auto_renew=False)
    assert waiter.acquire(wait_s=3) and waiter.release()
    with Lock(fake_redis, "w", ttl_s=1) as held:
        assert held.locked()
    assert not held.locked()


def test_auto_renew_keeps_the_lease_while_held(fake_redis: redis.Redis) -> None:
    lock = Lock(fake_redis, "long", ttl_s=0.15)
    with lock:
        time.sleep(0.4)  # well past ttl_s: only the renewals keep it
        assert fake_redis.get(lock.key) == lock.token.encode()
    assert not lock.locked()
