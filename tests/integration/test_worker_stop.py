"""Stopping a worker (in-process, real server): an idle one stops at once instead of after its
blocking wait, and a busy one keeps its leases while running jobs use the grace period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redisq import App, config
from redisq.backend import keys
from redisq.broker.consumer import Consumer
from redisq.worker.daemon import Daemon
from redisq.worker.prodcons import Worker
from redisq.worker.pubsub import PubSubWorker
from tests.support.wait import wait_until

# A blocking wait as long as in production, so that a stop that waited it out would show.
SLOW_WAIT = {"block_timeout_s": 5.0, "lease_s": 15.0, "concurrency": 2, "grace_s": 5.0}


@pytest.fixture
def start(app: App) -> Iterator[Callable[..., tuple[Daemon, threading.Thread]]]:
    started: list[tuple[Daemon, threading.Thread]] = []

    def go(kind: type[Daemon] = Worker, **overrides: Any) -> tuple[Daemon, threading.Thread]:
        worker = kind(app, config.load({**SLOW_WAIT, **overrides}, {}))
        thread = threading.Thread(target=worker.run, daemon=True, name="test-worker")
        thread.start()
        started.append((worker, thread))
        return worker, thread

    yield go
    for worker, thread in started:
        worker.stop(force=True)
        thread.join(10)


def blocked_moves(app: App) -> int:
    return sum(1 for c in app.client.client_list() if c["cmd"] == "blmove" and "b" in c["flags"])


def stop_time_s(worker: Daemon, thread: threading.Thread) -> float:
    t0 = time.monotonic()
    worker.stop()
    thread.join(10)
    assert not thread.is_alive(), "the worker did not stop"
    return time.monotonic() - t0


@pytest.mark.parametrize("queues", [("default",), ("high", "default")])
def test_an_idle_worker_stops_without_waiting_out_its_blocking_move(
        app: App, start: Callable[..., tuple[Daemon, threading.Thread]],
        queues: tuple[str, ...]) -> None:
    """One queue (the main thread's move) and two (one waiter thread per queue)."""
    worker, thread = start(queues=queues)
    wait_until(lambda: blocked_moves(app) == len(queues), 5, what="the worker's blocking moves")
    took = stop_time_s(worker, thread)
    assert took < 1.0, f"an idle worker took {took:.2f} s to stop (block_timeout_s 5)"
    assert blocked_moves(app) == 0
    assert not any(app.client.llen(k) for k in app.client.scan_iter("redisq:*:processing:*"))
    # What is queued after the stop waits for the next worker; nothing was taken.
    job = app.enqueue("t.anything")
    assert app.client.llen(keys.pending("default")) == 1 and job.status == "queued"


def test_an_idle_pubsub_worker_stops_at_once(
        app: App, start: Callable[..., tuple[Daemon, threading.Thread]]) -> None:
    @app.subscriber("quiet")
    def on_message(message: Any) -> None:
        pass

    worker, thread = start(PubSubWorker)
    wait_until(lambda: app.client.pubsub_numsub("quiet")[0][1] == 1, 5, what="the subscription")
    assert stop_time_s(worker, thread) < 1.0


def test_a_job_running_through_the_grace_period_keeps_its_lease(
        app: App, start: Callable[..., tuple[Daemon, threading.Thread]]) -> None:
    """The lease (1 s) is shorter than what the job still needs after the stop: renewals go on
    until the job is over, so another worker's recovery finds nothing stale to run again."""
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @app.task(name="t.long", retries=0)
    def long() -> str:
        runs.append(1)
        started.set()
        release.wait(8)
        return "done"

    job = long.delay()
    worker, thread = start(lease_s=1.0, block_timeout_s=0.3)
    assert started.wait(5)
    worker.stop()  # as SIGTERM: the running job may use the grace period (5 s)
    other = Consumer(app.client, ["default"], lease_s=1.0)
    deadline = time.monotonic() + 2.5  # more than two leases
    while time.monotonic() < deadline:
        assert other.requeue_stale() == 0, "a running job was recovered as stale"
        time.sleep(0.1)
    assert thread.is_alive(), "the worker stopped before its job ended"
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert job.result(1) == "done" and runs == [1]
    assert app.client.llen(keys.pending("default")) == 0
    # Given back on the way out: no lease left to wait out, no consumer entry.
    assert not app.client.exists(keys.lease("default", worker.consumer.id))  # type: ignore[attr-defined]
    assert not app.client.sismember(keys.consumers("default"), worker.consumer.id)  # type: ignore[attr-defined]
