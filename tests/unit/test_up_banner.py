"""`redisq up` announces where everything is without the Redis password, and uses a URL it
is given instead of starting the embedded server (children faked: nothing is started)."""

from __future__ import annotations

import sys

import pytest

from redisq import config
from redisq.ops import up


def test_banner_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "_on_signals", lambda stop, children: None)
    monkeypatch.setattr(up, "commands", lambda settings, spec: {
        "child": [sys.executable, "-c", "pass"]})
    monkeypatch.setattr(up, "_wait_ready", lambda url, children, stop: True)
    monkeypatch.setattr(up, "_watch", lambda children, stop: 0)

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a URL was given: no embedded server")

    monkeypatch.setattr(up, "RedisServer", no_server)
    said: list[str] = []
    settings = config.load({"url": "redis://app:hunter2@127.0.0.1:1/0", "grace_s": 0.1}, {})
    assert up.run(settings, announce=said.append) == 0
    assert len(said) == 1 and "hunter2" not in said[0]
    assert "REDIS_URL=redis://app:***@127.0.0.1:1/0" in said[0]
