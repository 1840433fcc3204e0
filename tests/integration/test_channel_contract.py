"""The pub/sub contract (tests/support/channel_contract.py) on a real server, where a cut is a
CLIENT KILL of the subscriber's connection; plus a long replay that needs several pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from redisq.backend.connection import ConnectionOptions, connect
from redisq.broker.channel import Channel, Subscriber
from tests.support.channel_contract import ChannelContract, collect, make_sub, quiet
from tests.support.wait import wait_until

OPTIONS = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=1.0)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url, "test-sub", OPTIONS)
    yield client
    client.close()


def kill_subscribers(admin: redis.Redis) -> Callable[[Subscriber], None]:
    def cut(sub: Subscriber) -> None:
        wait_until(lambda: admin.client_kill_filter(_type="pubsub"), 2, what="a pubsub client")

    return cut


class TestChannelOnRealRedis(ChannelContract):
    @pytest.fixture
    def cut(self, real_redis: redis.Redis) -> Callable[[Subscriber], None]:
        return kill_subscribers(real_redis)


def test_long_replay_pages_through_the_stream(r: redis.Redis, real_redis: redis.Redis) -> None:
    """1,200 messages missed (more than one XRANGE page of 500) come back once, in order."""
    sub = make_sub(r, durable=["log"])
    kill_subscribers(real_redis)(sub)
    chan = Channel(real_redis, "log", durable=True)
    for i in range(1200):
        chan.publish(f"m{i}".encode())
    got = collect(sub, 1200, timeout_s=5)
    assert [m.data for m in got] == [f"m{i}".encode() for i in range(1200)]
    assert quiet(sub)
    sub.close()


def test_subscriber_connection_is_named(r: redis.Redis, real_redis: redis.Redis) -> None:
    """The subscriber's connection carries redisq's client name, so operators (and the
    fault tests) can find and kill it."""
    sub = make_sub(r, channels=["news"])
    names = [c["name"] for c in real_redis.client_list(_type="pubsub")]
    assert names and all(n.startswith("redisq:test-sub:") for n in names)
    sub.close()
