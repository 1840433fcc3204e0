"""The queue contract on fakeredis (no network), plus what only a fake server can stage
cheaply: a connection outage switched on and off."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from redisq.backend.connection import Outage
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from tests.support.queue_contract import QueueContract, bodies


class TestQueueOnFakeRedis(QueueContract):
    @pytest.fixture
    def r(self, fake_redis: redis.Redis) -> redis.Redis:
        return fake_redis


def test_outage_is_absorbed_counted_and_nothing_is_lost() -> None:
    """While the server is unreachable reserve returns [] (never raises) and backs off; after
    it comes back exactly one reconnect is counted and every message arrives once."""
    server = fakeredis.FakeServer()
    r = fakeredis.FakeRedis(server=server)
    q = Queue(r, "jobs")
    q.put_many([b"a", b"b"])
    slept: list[float] = []
    c = Consumer(r, ["jobs"], consumer_id="c1", block_timeout_s=0.05,
                 outage=Outage("c1", sleep=slept.append))
    assert bodies(c.reserve(1)) == [b"a"]
    server.connected = False
    assert c.reserve(1) == [] and c.reserve(1) == []
    assert c.outage.down and len(slept) == 2
    server.connected = True
    assert bodies(c.reserve(5)) == [b"b"]
    assert c.outage.reconnects == 1 and not c.outage.down


def test_non_connection_errors_propagate_but_strand_nothing() -> None:
    """An error reply (e.g. OOM) is raised to the caller, and what the call had already
    taken is delivered by a later reserve."""
    r = fakeredis.FakeRedis()
    Queue(r, "high").put(b"h")
    c = Consumer(r, ["high", "low"], consumer_id="c1", block_timeout_s=0.05)
    real = c.scripts.run_many
    calls = {"n": 0}

    def second_fails(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise redis.ResponseError("OOM command not allowed")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    c.scripts.run_many = second_fails  # type: ignore[method-assign,assignment]
    with pytest.raises(redis.ResponseError):
        c.reserve(5, timeout_s=0)
    assert bodies(c.reserve(5, timeout_s=0)) == [b"h"]
