"""The fencing contract (tests/support/fencing_contract.py) on fakeredis."""

from __future__ import annotations

import pytest
import redis

from redisq import App
from tests.support.fencing_contract import FencingContract


class TestFencingOnFakeRedis(FencingContract):
    @pytest.fixture
    def app(self, fake_redis: redis.Redis) -> App:
        application = App("redis://127.0.0.1:1/0")
        application._client = fake_redis
        return application
