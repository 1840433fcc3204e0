"""Fuzz: random raw messages (random bytes, random JSON values, random near-valid envelopes)
thrown at the worker's decode/record step. Nothing escapes, and every message ends either
runnable or dead-lettered, none lost: in-process for thousands of examples (the worker's own
``start`` step, its outputs captured), then a sample through a real worker process."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redisq import App, config
from redisq.backend import keys
from redisq.model import DEAD, Message
from redisq.worker.prodcons import Worker
from tests import poison_app
from tests.support.procs import start_worker, stop
from tests.support.wait import wait_until

# 2,300 examples in all (each test well under the 10 s timeout): 600 random bytes, 500 JSON
# values and objects, 600 envelopes, 300 depths, and 300 messages through a real worker.
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids,
                                                              max_size=3),
    max_leaves=8)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
FIELDS = {"id": st.text(max_size=12) | scalars,
          "task": st.sampled_from(["fz.take", "no.such.task", ""]) | scalars,
          "args": st.lists(scalars, max_size=3) | scalars | st.dictionaries(st.text(), scalars),
          "kwargs": st.dictionaries(st.text(max_size=5), scalars, max_size=3) | scalars,
          "queue": st.just("q") | scalars, "attempt": st.integers(-2, 5) | scalars,
          "enqueued_at": st.floats(allow_nan=False) | scalars,
          "unique": st.none() | st.text(max_size=5) | scalars}
envelopes = st.fixed_dictionaries({}, optional=FIELDS)


class Sink:
    """Where the worker's ``start`` step sends each message: runnable, settled as dead (with a
    job id), or buried raw."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.dead: list[tuple[bytes, str]] = []
        self.settled: list[str] = []  # job ids settled dead (their records say so)
        worker.record = lambda job, outcome, holds_slot=False: (  # type: ignore[method-assign]
            self.dead.append((job.message.body, outcome.error_type)),
            self.settled.append(job.env.id)) if outcome.status == DEAD else None
        worker._bury_raw = lambda m, error_type, reason: self.dead.append(  # type: ignore
            (m.body, error_type))

    def throw(self, body: bytes) -> None:
        self.dead.clear()
        # As a batch reservation hands it over (before='': marked, no record), so the step
        # under test is the decode; a blocking move's mark is the fencing tests' business.
        runnable = self.worker.start([Message("q", body, "")])  # must not raise, whatever body is
        ends = [r.message.body for r in runnable] + [b for b, _ in self.dead]
        assert ends == [body], f"{body!r} ended {len(ends)} times"
        if runnable:  # runnable: exactly what Envelope allows, for a registered task
            env = runnable[0].env
            assert env.task == "fz.take" and isinstance(env.args, list) and env.attempt >= 1


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    quiet = logging.getLogger("redisq.worker")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # thousands of "dead-lettered" lines: not the point here
    app = App("redis://127.0.0.1:1/0")  # the start step itself sends nothing

    @app.task(name="fz.take")
    def take(*args: Any, **kwargs: Any) -> None: ...

    worker = Worker(app, config.load({"queues": "q", "concurrency": 1}, {}))
    yield Sink(worker)
    worker.recorder.close(1)
    worker.pool.close()
    quiet.setLevel(level)


def test_poison_naming_a_job_settles_it_unless_it_is_finished(sink: Sink) -> None:
    sink.settled.clear()
    sink.throw(b'{"id":"p1","task":5}')
    assert sink.settled == ["p1"]  # the record says dead: a waiting producer is told
    for before in ("succeeded", "failed", "dead", "cancelled"):
        sink.settled.clear()
        runnable = sink.worker.start([Message("q", b'{"id":"p2","task":5}', before)])
        assert not runnable and not sink.settled  # buried raw; the finished record stays


@settings(FUZZ, max_examples=600)
@given(st.binary(max_size=300))
def test_random_bytes(sink: Sink, body: bytes) -> None:
    sink.throw(body)


@settings(FUZZ, max_examples=250)
@given(json_values)
def test_random_json_values(sink: Sink, value: Any) -> None:
    sink.throw(json.dumps(value).encode())


@settings(FUZZ, max_examples=250)
@given(st.dictionaries(st.sampled_from(list(FIELDS)), json_values, max_size=4))
def test_random_json_objects_with_job_fields(sink: Sink, value: dict[str, Any]) -> None:
    sink.throw(json.dumps(value).encode())


@settings(FUZZ, max_examples=300)
@given(envelopes)
def test_random_near_valid_envelopes(sink: Sink, env: dict[str, Any]) -> None:
    sink.throw(json.dumps(env).encode())


@settings(FUZZ, max_examples=300)
@given(envelopes.filter(lambda e: isinstance(e.get("id"), str)))
def test_random_near_valid_envelopes_id_first(sink: Sink, env: dict[str, Any]) -> None:
    sink.throw(json.dumps({"id": env["id"], **env}).encode())  # as redisq writes it


@settings(FUZZ, max_examples=300)
@given(st.integers(0, 2000), st.sampled_from([b"[", b"{\"a\":", b"[{\"k\":"]))
def test_random_depths(sink: Sink, depth: int, opener: bytes) -> None:
    closer = {b"[": b"]", b"{\"a\":": b"}", b"[{\"k\":": b"}]"}[opener]
    sink.throw(b'{"id":"d","task":"fz.take","args":[' + opener * depth + b"1" + closer * depth
               + b"]}")


def sample(rng: random.Random, n: int) -> list[bytes]:
    """``n`` raw messages, each with an id of its own where it has one: a third random bytes,
    a third random JSON, a third near-valid envelopes (many of them runnable)."""
    out: list[bytes] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 64)))
        elif kind == 1:
            out.append(json.dumps(rng.choice([[i], {"n": i}, "x", i, None, [[[i]]]])).encode())
        else:
            env: dict[str, Any] = {"id": f"fz{i}", "task": "fz.take", "args": [i]}
            for field, bad in (("args", "x"), ("kwargs", [1]), ("attempt", True),
                               ("task", "no.such"), ("unique", 5), ("queue", 3)):
                if rng.random() < 0.12:
                    env[field] = bad
            out.append(json.dumps(env).encode())
    return out


def test_a_real_worker_takes_a_random_sample(redis_url: str) -> None:
    poison_app.app._url = redis_url
    poison_app.app.close()
    r = poison_app.app.client
    messages = sample(random.Random(12), 300)
    r.lpush(keys.pending("default"), *messages)
    worker = start_worker(redis_url, "--app", "tests.poison_app:app")
    try:
        wait_until(lambda: r.llen(keys.pending("default")) == 0, 8, what="the sample taken")
        ran = {f"fz{i}".encode() for i, m in enumerate(messages) if m.startswith(b'{"id"')} & \
            set(r.hkeys("fz:ran"))

        def settled() -> bool:
            return len(set(r.hkeys("fz:ran"))) + r.llen(keys.dead("default")) == len(messages)

        wait_until(settled, 8, what="every message run or dead-lettered")
        assert worker.poll() is None
        assert set(r.hvals("fz:ran")) <= {b"1"}  # each ran once
        dead = [json.loads(e) for e in r.lrange(keys.dead("default"), 0, -1)]
        assert not ({d["job_id"].encode() for d in dead} & ran)  # none both ran and dead
        assert len(ran) > 30 and len(dead) > 150
        assert poison_app.take.delay().result(3) == 0 and worker.poll() is None
    finally:
        stop(worker)
