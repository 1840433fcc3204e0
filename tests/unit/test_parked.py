"""Outcomes parked in the recorder while their queue's node is down: they free their slot, are
bounded per queue (the consumer then skips the queue), are written once the node answers, and
a stopping consumer does not give back the messages of outcomes left unwritten."""

from __future__ import annotations

import threading

import fakeredis

from redisq.backend import keys
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from redisq.worker.recorder import Recorder
from tests.support.queue_contract import bodies
from tests.support.wait import wait_until
from tests.unit.test_resting import FailingRecords, job


def test_an_outcome_that_waits_for_its_node_frees_its_slot_and_is_written_later() -> None:
    records = FailingRecords()
    records.down = {"q0"}
    parked: list[str] = []
    settled: list[tuple[str, bool]] = []
    recorder = Recorder(records, "c", "w", lambda d: b"",
                        lambda j, o, h, a: settled.append((j.env.id, h)), threading.Event(),
                        on_parked=lambda j: parked.append(j.env.id), cap=2)
    try:
        recorder.put(job("q0", "a"), None, True)
        recorder.put(job("q1", "b"), None, True)
        wait_until(lambda: parked == ["a"] and settled == [("b", True)], 3,
                   what="q0's outcome parked, q1's written")
        assert recorder.parked() == 1 and not recorder.full("q0")
        recorder.put(job("q0", "c"), None, False)  # holds no slot: nothing to free
        wait_until(lambda: recorder.full("q0"), 3, what="q0 at its cap")
        assert parked == ["a"] and not recorder.full("q1")
        records.down.clear()
        wait_until(lambda: recorder.parked() == 0, 5, what="q0's outcomes written")
        assert not recorder.full("q0")
        # Written once, and not as holding a slot: it was freed when parked.
        assert sorted(settled) == [("a", False), ("b", True), ("c", False)]
        assert sorted(records.recorded) == ["a", "b", "c"]
    finally:
        assert recorder.close() == set()


def test_a_forced_stop_reports_the_queues_whose_outcomes_were_not_written() -> None:
    records = FailingRecords()
    records.down = {"q0"}
    forced = threading.Event()
    recorder = Recorder(records, "c", "w", lambda d: b"", lambda j, o, h, a: None, forced)
    recorder.put(job("q0", "a"), None, True)
    recorder.put(job("q1", "b"), None, True)
    wait_until(lambda: recorder.parked() == 1, 3, what="q0's outcome parked")
    forced.set()
    assert recorder.close() == {"q0"}
    assert records.recorded == ["b"]


def test_a_skipped_queue_is_not_reserved_from() -> None:
    r = fakeredis.FakeRedis()
    for q in ("q0", "q1"):
        Queue(r, q).put_many([f"{q}-1".encode(), f"{q}-2".encode()])
    c = Consumer(r, ["q0", "q1"], consumer_id="c1", block_timeout_s=0.05)
    full = {"q0"}
    c.skip = lambda q: q in full
    assert bodies(c.reserve(3)) == [b"q1-1", b"q1-2"]
    assert c.reserve(1, timeout_s=0.05) == []  # q0 still skipped, q1 empty
    full.clear()
    assert bodies(c.reserve(3)) == [b"q0-1", b"q0-2"]
    one = Consumer(r, ["q1"], consumer_id="c2", block_timeout_s=0.05)
    Queue(r, "q1").put_many([b"q1-3"])
    one.skip = lambda q: True  # a single queue: no blocking move on it either
    assert one.reserve(1, timeout_s=0.05) == []
    assert r.llen(keys.pending("q1")) == 1


def test_close_keeps_the_messages_of_queues_with_unwritten_outcomes() -> None:
    r = fakeredis.FakeRedis()
    for q in ("q0", "q1"):
        Queue(r, q).put_many([f"{q}-1".encode()])
    c = Consumer(r, ["q0", "q1"], consumer_id="c1", block_timeout_s=0.05)
    assert len(c.reserve(2)) == 2
    c.close(release=True, keep={"q0"})
    assert r.lrange(keys.processing("q0", "c1"), 0, -1) == [b"q0-1"]  # its lease runs out
    assert r.exists(keys.lease("q0", "c1"))
    assert r.llen(keys.processing("q1", "c1")) == 0 and r.llen(keys.pending("q1")) == 1
    Queue(r, "q0").put_many([b"q0-2"])
    c2 = Consumer(r, ["q0"], consumer_id="c2", block_timeout_s=0.05)
    assert bodies(c2.reserve(1)) == [b"q0-2"]
    c2.close(release=True, keep=None)  # None: the recorder may still write; keep every queue
    assert r.lrange(keys.processing("q0", "c2"), 0, -1) == [b"q0-2"]
