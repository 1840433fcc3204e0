"""Per-queue resting (cluster) and the recorder that keeps other queues' outcomes flowing while
one queue's node is down. No Redis: a fake clock and a fake ``Records``."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import redis

from redisq.broker.resting import RestingQueues
from redisq.worker.recorder import Recorder
from tests.support.wait import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_resting_queue_is_skipped_probed_once_per_backoff_and_woken() -> None:
    clock = Clock()
    rest = RestingQueues("test", clock)
    queues = ["a", "b", "c"]
    assert rest.awake(queues) == queues and rest.claim_due() == []
    rest.rest("b", ConnectionError("node down"))
    assert rest.awake(queues) == ["a", "c"] and "b" in rest
    assert rest.claim_due() == []  # its backoff is not over
    clock.now += 5.0  # more than any backoff
    assert rest.claim_due() == ["b"] and rest.awake(queues) == ["a", "c"]  # probed, still skipped
    assert rest.claim_due() == []  # one probe at a time, however long it takes
    rest.rest("b", ConnectionError("still down"))  # the probe failed: rest again
    clock.now += 5.0
    assert rest.claim_due() == ["b"]
    rest.woke("b")  # the probe answered
    assert rest.awake(queues) == queues and "b" not in rest and rest.claim_due() == []


class FailingRecords:
    """settle_many fails while any call is for a queue in ``down``."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.recorded: list[str] = []
        self.lock = threading.Lock()

    def settle_call(self, consumer_id: str, msg: Any, env: Any, outcome: Any, worker_id: str,
                    dumps: Any) -> tuple[str, list[str], list[Any]]:
        return "settle", [msg.queue], [env.id]

    def settle_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        with self.lock:
            if any(ks[0] in self.down for _, ks, _ in calls):
                raise redis.ConnectionError("node down")
            self.recorded += [args[0] for _, _, args in calls]
        return [1] * len(calls)


def job(queue: str, job_id: str) -> Any:
    return SimpleNamespace(message=SimpleNamespace(queue=queue),
                           env=SimpleNamespace(id=job_id, workflow=None))


def test_the_recorder_records_other_queues_while_one_fails_and_that_one_later() -> None:
    records = FailingRecords()
    records.down = {"q0"}
    resting: set[str] = set()
    settled: list[str] = []
    recorder = Recorder(records, "c", "w", lambda d: b"", lambda j, o, h, a: settled.append(j.env.id),
                        threading.Event(), resting=lambda q: q in resting)
    try:
        recorder.put(job("q0", "a"), None, True)
        recorder.put(job("q1", "b"), None, True)
        wait_until(lambda: settled == ["b"], 3, what="q1's outcome, beside q0's failing one")
        resting.add("q0")  # known down: held back, not tried
        recorder.put(job("q1", "c"), None, True)
        recorder.put(job("q0", "d"), None, True)
        wait_until(lambda: "c" in settled, 3, what="another q1 outcome")
        assert "a" not in settled and "d" not in settled
        records.down.clear()
        resting.clear()
        wait_until(lambda: {"a", "d"} <= set(settled), 5, what="q0's outcomes once it is back")
    finally:
        recorder.close()
    assert sorted(settled) == ["a", "b", "c", "d"]
