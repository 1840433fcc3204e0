"""The pub/sub contract on fakeredis: the connection is cut by making the fake server refuse
every command for one poll."""

from __future__ import annotations

from collections.abc import Callable

import fakeredis
import pytest
import redis

from redisq.broker.channel import Subscriber
from tests.support.channel_contract import ChannelContract


class TestChannelOnFakeRedis(ChannelContract):
    @pytest.fixture
    def server(self) -> fakeredis.FakeServer:
        return fakeredis.FakeServer()

    @pytest.fixture
    def r(self, server: fakeredis.FakeServer) -> redis.Redis:
        return fakeredis.FakeRedis(server=server)

    @pytest.fixture
    def cut(self, server: fakeredis.FakeServer) -> Callable[[Subscriber], None]:
        def cut(sub: Subscriber) -> None:
            server.connected = False
            assert sub.get(0.01) is None  # notices, drops the connection, backs off
            assert sub.outage.down
            server.connected = True

        return cut
