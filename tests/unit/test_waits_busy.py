"""A waiter that answered with a message keeps the consumer "busy" until its message is
collected: in between, the message sits in the processing list without being held, and an
orphan check must not deliver it (it ran twice: once as an orphan, once when collected; seen
with fast-forwarded retries on two queues, tests/testing/test_run_until_idle.py)."""

from __future__ import annotations

import threading

from redisq.broker.waits import Waits


def test_an_answered_waiter_is_busy_until_collected() -> None:
    waits = Waits(None, "c1", 2)  # type: ignore[arg-type] (the moves here need no client)
    release = threading.Event()

    def move(q: str, timeout_s: float) -> list[bytes] | int | None:
        release.wait(5)
        return [b"message"] if q == "a" else None

    waits.start("a", 1.0, move)
    waits.start("b", 1.0, move)
    assert waits.busy()  # both still in their move
    release.set()
    waits.wait_any(5)
    while len(waits.answered()) < 2:
        waits.wait_any(0.1)
    assert waits.busy()  # "a" answered with a message nobody collected yet
    assert waits.collect("a") == [b"message"]
    assert not waits.busy()  # "b" timed out: nothing of it can be in the processing list
    assert waits.collect("b") is None
    waits.close()
