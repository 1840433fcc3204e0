"""The queue contract (tests/support/queue_contract.py) on a real server, through redisq's own
connect() (read deadlines, no hidden retries, the lean per-thread connections)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from redisq.backend.connection import ConnectionOptions, connect
from tests.support.queue_contract import QueueContract

OPTIONS = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=1.0)


class TestQueueOnRealRedis(QueueContract):
    @pytest.fixture
    def r(self, redis_url: str) -> Iterator[redis.Redis]:
        client = connect(redis_url, "test", OPTIONS)
        yield client
        client.close()
