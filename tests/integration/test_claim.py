"""A worker's blocking wait claims what it brings in the same round trip (redisq/broker/waits.py,
``lua/reserve.lua`` in claim mode): the BLMOVE lands in the consumer's inbox and the reserve
step pipelined behind it marks the job started, so an idle worker's job needs no start step.
What could strand a message in the inbox (a flushed script cache, a lost reply, a dead
worker) is covered here too."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from redisq import App
from redisq.backend import control, keys
from redisq.broker.consumer import Consumer
from tests.support.inproc import running
from tests.support.wait import wait_until

Q = "default"


def consumer(app: App, cid: str = "wa", lease_s: float = 5.0) -> Consumer:
    return Consumer(app.client, [Q], consumer_id=cid, lease_s=lease_s, block_timeout_s=2.0,
                    mark_jobs=cid)


def enqueue_when_waiting(app: App, cid: str, fn: Any) -> threading.Thread:
    """Run ``fn`` once ``cid``'s blocking move is out (seen in CLIENT LIST as blocked)."""
    def go() -> None:
        wait_until(lambda: any(c.get("cmd") == "blmove" for c in app.client.client_list()),
                   5, what="the blocking move")
        fn()
    t = threading.Thread(target=go)
    t.start()
    return t


def test_a_job_a_wait_brings_is_marked_started_in_the_same_round_trip(app: App) -> None:
    c = consumer(app)
    c.heartbeat()
    calls: list[str] = []
    real = c.scripts.run_many
    c.scripts.run_many = lambda batch, *a, **k: (  # type: ignore[method-assign]
        calls.extend(name for name, _, _ in batch), real(batch, *a, **k))[1]
    c._take_orphans(1)
    holder: list[Any] = []
    t = enqueue_when_waiting(app, "wa", lambda: holder.append(app.enqueue("t.x", args=(1,))))
    calls.clear()
    (m,) = c.reserve(1, timeout_s=2.0)
    t.join()
    (job,) = holder
    assert m.before == "queued" and m.token == c.token(Q)
    info = app.records.get(Q, job.id)
    assert info["status"] == "started" and info["worker"] == "wa"
    assert float(info["started_at"]) > 0
    assert "start" not in calls, "no start step of its own"
    assert app.client.lrange(keys.processing(Q, "wa"), 0, -1) == [m.body]
    assert not app.client.exists(keys.inbox(Q, "wa"))


def test_a_queue_paused_while_the_wait_was_out_gets_its_message_back_unmarked(
        app: App) -> None:
    c = consumer(app)
    c.heartbeat()

    def pause_then_enqueue() -> None:
        control.pause(app.client, Q)
        holder.append(app.enqueue("t.x", args=(1,)))

    holder: list[Any] = []
    t = enqueue_when_waiting(app, "wa", pause_then_enqueue)
    assert c.reserve(1, timeout_s=2.0) == []
    t.join()
    (job,) = holder
    assert job.status == "queued"
    assert app.client.llen(keys.pending(Q)) == 1
    assert not app.client.exists(keys.inbox(Q, "wa"), keys.processing(Q, "wa"))
    control.resume(app.client, Q)
    (m,) = c.reserve(1, timeout_s=0)
    assert m.before == "queued" and job.status == "started"


def test_a_flushed_script_cache_while_waiting_still_claims(app: App) -> None:
    """The pipelined claim answers NOSCRIPT (SCRIPT FLUSH, or a restart that kept the data):
    the consumer loads the script and claims what the move brought."""
    c = consumer(app)
    c.heartbeat()
    holder: list[Any] = []

    def flush_then_enqueue() -> None:
        app.client.script_flush()
        holder.append(app.enqueue("t.x", args=(1,)))

    t = enqueue_when_waiting(app, "wa", flush_then_enqueue)
    (m,) = c.reserve(1, timeout_s=2.0)
    t.join()
    assert m.before == "queued" and holder[0].status == "started"
    assert not app.client.exists(keys.inbox(Q, "wa"))


def test_a_message_left_in_the_inbox_is_claimed_by_the_orphan_check(app: App) -> None:
    """E.g. the claim's reply was lost with its connection: the message may sit in the inbox;
    the next orphan check claims it and delivers it (once)."""
    c = consumer(app)
    c.heartbeat()
    job = app.enqueue("t.x", args=(1,))
    app.client.lmove(keys.pending(Q), keys.inbox(Q, "wa"), "RIGHT", "LEFT")
    c.recheck()
    (m,) = c.reserve(5, timeout_s=0)
    assert m.token == c.token(Q) and job.status == "started"
    assert c.reserve(5, timeout_s=0) == []
    assert not app.client.exists(keys.inbox(Q, "wa"))


@pytest.mark.parametrize("how", ["recovered", "released"])
def test_a_message_left_in_the_inbox_goes_back_with_the_consumer(app: App, how: str) -> None:
    """A dead consumer's inbox is recovered with its processing list (requeue_stale.lua), and
    a stopping one gives it back (release.lua)."""
    wa, wb = consumer(app, "wa"), consumer(app, "wb")
    wa.heartbeat()
    app.enqueue("t.x", args=(1,))
    app.client.lmove(keys.pending(Q), keys.inbox(Q, "wa"), "RIGHT", "LEFT")
    if how == "recovered":
        app.client.delete(keys.lease(Q, "wa"))
        assert wb.requeue_stale() == 1
    else:
        wa.close(release=True)
    assert not app.client.exists(keys.inbox(Q, "wa"))
    (m,) = wb.reserve(1, timeout_s=0)
    assert m.before == "queued"


def test_a_lost_claim_reply_loses_nothing_and_runs_once(app: App) -> None:
    """The connection dies after the server claimed the message, before the reply is read:
    the worker's orphan check delivers it, and it runs once."""
    runs: list[int] = []

    @app.task(name="t.once")
    def once(n: int) -> None:
        runs.append(n)

    def cut_the_first_claim(worker: Any) -> None:
        from redisq.broker import waits

        real = waits.Waits._claimed
        state = {"cut": False}

        def claimed(self: Any, conn: Any, *a: Any) -> Any:
            answer = real(self, conn, *a)
            if answer is not None and not state["cut"]:
                state["cut"] = True
                conn.disconnect()
                raise redis.ConnectionError("the reply was lost")
            return answer
        worker._cut = (waits.Waits, "_claimed", real, state)
        waits.Waits._claimed = claimed  # type: ignore[method-assign]

    try:
        with running(app, before_start=cut_the_first_claim) as worker:
            wait_until(lambda: any(c.get("cmd") == "blmove"
                                   for c in app.client.client_list()), 5, what="the wait")
            job = once.delay(7)
            assert job.result(5) is None
            wait_until(lambda: worker.consumer.held() == 0, 5, what="settled")
    finally:
        cls, name, real, state = worker._cut
        setattr(cls, name, real)
    assert state["cut"], "the job came through a claimed wait"
    assert runs == [7]
