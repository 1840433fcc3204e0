"""Reconnect backoff (capped, jittered, reset on success) and the Outage bookkeeping that
drives it: logged once per outage, reconnects counted, sleep injectable."""

from __future__ import annotations

import logging
import random

import pytest

from redisq.backend.backoff import Backoff, retry_delay_s
from redisq.backend.connection import Outage


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    """Every delay is within [base/2, min(cap, base * 2**n)] and the cap is reached."""
    b = Backoff(base_s=0.05, cap_s=0.4, rng=random.Random(7))
    for n in range(12):
        ceiling = min(0.4, 0.05 * 2**n)
        d = b.next_delay_s()
        assert 0.025 <= d <= max(ceiling, 0.05)
    assert b.failures == 12


def test_delays_are_jittered() -> None:
    """Full jitter: a herd of clients does not retry in lock-step."""
    delays = {Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(seed), failures=5).next_delay_s()
              for seed in range(50)}
    assert len(delays) == 50
    assert min(delays) < 0.5 < max(delays)


def test_reset_starts_over() -> None:
    b = Backoff(base_s=0.05, cap_s=2.0, rng=random.Random(1))
    for _ in range(10):
        b.next_delay_s()
    b.reset()
    assert b.failures == 0
    assert b.next_delay_s() <= 0.05


def test_huge_failure_counts_do_not_overflow() -> None:
    b = Backoff(base_s=0.05, cap_s=2.0, failures=10_000)
    assert b.next_delay_s() <= 2.0


@pytest.mark.parametrize("attempt", [1, 2, 5, 50])
def test_job_retry_delay_is_jittered_within_half_and_full(attempt: int) -> None:
    ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
    for seed in range(20):
        d = retry_delay_s(attempt, 1.0, 60.0, random.Random(seed))
        assert ceiling / 2 <= d <= ceiling


def test_outage_logs_once_counts_one_reconnect_and_resets_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    """Three failures then a success: one WARNING for the loss, one for the recovery, one
    reconnect counted, the callback run once, and the backoff starts over."""
    slept: list[float] = []
    called: list[int] = []
    o = Outage("thing", Backoff(base_s=0.01, cap_s=0.1, rng=random.Random(3)),
               sleep=slept.append, on_reconnect=lambda: called.append(1))
    with caplog.at_level(logging.DEBUG, logger="redisq.connection"):
        for _ in range(3):
            o.failed(ConnectionError("boom"))
        assert o.down
        o.succeeded()
        o.succeeded()  # not down: nothing to count
    assert len(slept) == 3 and all(0 < s <= 0.1 for s in slept)
    assert o.reconnects == 1 and called == [1] and not o.down
    assert o.backoff.failures == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "connection lost" in warnings[0].getMessage()
    assert "boom" in warnings[0].getMessage()
    assert "reconnected" in warnings[1].getMessage()


def test_outage_failed_without_wait_returns_the_delay() -> None:
    slept: list[float] = []
    o = Outage("x", sleep=slept.append)
    delay = o.failed(OSError("x"), wait=False)
    assert delay > 0 and slept == []
