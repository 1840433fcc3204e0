"""Outcomes that cannot be written for one queue (in-process worker, real server; the ``settle``
steps of q0 are refused by a patch, as a cluster node that is down or refuses writes would):
they free their slots, so the worker goes on with q1; q0 stops being reserved from once
``concurrency`` outcomes wait; they are written once q0 takes writes again, each job run once;
and a forced stop does not give back the messages whose outcome is unwritten."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redisq import App, config
from redisq.backend import keys
from redisq.backend.scripts import Scripts
from redisq.worker.prodcons import Worker
from tests.support.inproc import FAST, running
from tests.support.wait import wait_until

PER_QUEUE = 12


class Refusal:
    """While ``on``, a round trip with a ``settle`` of q0 fails as a lost connection."""

    def __init__(self) -> None:
        self.on = threading.Event()


@pytest.fixture
def refusal(monkeypatch: pytest.MonkeyPatch) -> Refusal:
    state = Refusal()
    real = Scripts.run_many

    def run_many(self: Scripts, calls: list[tuple[str, list[str], list[Any]]], *args: Any,
                 **kwargs: Any) -> list[Any]:
        if state.on.is_set() and any(name == "settle" and ks[0].startswith("redisq:{q0}")
                                     for name, ks, _ in calls):
            raise redis.ConnectionError("q0's outcomes refused (test)")
        return real(self, calls, *args, **kwargs)

    monkeypatch.setattr(Scripts, "run_many", run_many)
    return state


@pytest.fixture
def noted(redis_url: str) -> Iterator[tuple[App, Counter[tuple[str, int]]]]:
    app = App(redis_url)
    ran: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    @app.task(name="t.note", retries=0)
    def note(q: str, i: int) -> None:
        with lock:
            ran[(q, i)] += 1

    for q in ("q0", "q1"):
        app.enqueue_many("t.note", [((q, i), {}) for i in range(PER_QUEUE)], queue=q)
    yield app, ran
    app.close()


def ran_on(ran: Counter[tuple[str, int]], q: str) -> int:
    return sum(1 for k in list(ran) if k[0] == q)


def test_unwritten_outcomes_free_their_slots_up_to_a_cap_and_are_written_later(
        noted: tuple[App, Counter[tuple[str, int]]], refusal: Refusal) -> None:
    app, ran = noted
    refusal.on.set()
    with running(app, queues=("q0", "q1"), concurrency=2) as worker:
        wait_until(lambda: ran_on(ran, "q1") == PER_QUEUE, 5,
                   what="q1's jobs while q0's outcomes are refused")
        # q0 first in priority: two of its jobs ran, their outcomes parked (the cap), then q0
        # was skipped. At most the cap plus what was in flight when it was reached.
        assert 2 <= ran_on(ran, "q0") <= 4
        assert worker.recorder.full("q0") and not worker.recorder.full("q1")
        assert worker.state()["parked"] >= 2  # shown in the registry entry (redisq info)
        refusal.on.clear()
        wait_until(lambda: app.queue("q0").counts().get("succeeded") == PER_QUEUE, 6,
                   what="q0's outcomes written and its other jobs run")
    assert len(ran) == 2 * PER_QUEUE and set(ran.values()) == {1}, "each job ran once"


def test_a_forced_stop_keeps_the_messages_whose_outcome_is_unwritten(
        noted: tuple[App, Counter[tuple[str, int]]], refusal: Refusal) -> None:
    app, ran = noted
    refusal.on.set()
    worker = Worker(app, config.load({**FAST, "queues": ("q0", "q1"), "concurrency": 2}, {}))
    thread = threading.Thread(target=worker.run, daemon=True, name="test-worker")
    thread.start()
    try:
        wait_until(lambda: ran_on(ran, "q1") == PER_QUEUE and worker.recorder.full("q0"), 5,
                   what="q1 drained, q0's outcomes parked")
    finally:
        worker.stop(force=True)
        thread.join(5)
    assert not thread.is_alive()
    r = app.client
    # Not given back (the outcome might still be written): the lease runs out instead.
    held = r.llen(keys.processing("q0", worker.consumer.id))
    assert held >= ran_on(ran, "q0") >= 2
    assert r.llen(keys.pending("q0")) == PER_QUEUE - held
    assert r.exists(keys.lease("q0", worker.consumer.id))
    # The other queue was released as usual.
    assert not r.exists(keys.lease("q1", worker.consumer.id))
