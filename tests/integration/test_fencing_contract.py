"""The fencing contract (tests/support/fencing_contract.py) on a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redisq import App
from tests.support.fencing_contract import FencingContract


class TestFencingOnRealRedis(FencingContract):
    @pytest.fixture
    def app(self, redis_url: str) -> Iterator[App]:
        application = App(redis_url)
        yield application
        application.close()
