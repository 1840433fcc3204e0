"""MemoryPressure (fake clock): one WARNING a minute at maxmemory, not one per refusal."""

from __future__ import annotations

import logging

import pytest
import redis

from redisq.backend.pressure import MemoryPressure, is_oom


def test_one_warning_a_minute_and_one_line_when_room_is_back(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    p = MemoryPressure("worker w", clock=lambda: now[0])
    oom = redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    with caplog.at_level(logging.INFO, logger="redisq.worker"):
        for _ in range(100):
            p.refused("a blocking reserve", oom)
            now[0] += 0.1  # 10 s of refusals
        assert p.full and p.refusals == 100
        p.room()  # a flicker at the edge, then full again within the minute
        p.refused("the heartbeat")
        now[0] += 51.0
        p.refused("the heartbeat")  # a minute after the first warning
        p.room()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 2 and "101 refusal(s)" in warnings[1]  # all since the first
    assert len(infos) == 2 and all("room again" in m for m in infos)
    assert not p.full and p.state() == {"oom_refusals": 102}


def test_is_oom() -> None:
    assert is_oom(redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert is_oom(redis.exceptions.ExecAbortError(
        "Transaction discarded because of: OOM command not allowed when used memory > "
        "'maxmemory'."))
    assert not is_oom(redis.ResponseError("NOPERM"))
