"""Fencing contract: a consumer whose lease expired and whose messages were recovered cannot
start or settle them any more (``lua/renew.lua``, ``reserve.lua``, ``start.lua``,
``settle.lua``, ``requeue_stale.lua``), and a late outcome never overwrites another worker's.

Run on fakeredis (tests/unit/test_fencing_fake.py) and on a real server
(tests/integration/test_fencing_contract.py); a binding provides the fixture ``app``: an App on
an empty database.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from redisq import App
from redisq.backend import keys
from redisq.backend.records import SETTLE_DUPLICATE, SETTLE_FENCED
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Message, Outcome
from tests.support.records import job_ids_in

Q = "default"


def consumer(app: App, cid: str) -> Consumer:
    """A worker's consumer: its id is its worker id, and it marks job records started."""
    return Consumer(app.client, [Q], consumer_id=cid, lease_s=5.0, block_timeout_s=0.2,
                    mark_jobs=cid)


def expire_and_recover(app: App, frozen: Consumer, other: Consumer) -> int:
    """``frozen``'s lease runs out (it was stopped) and ``other`` recovers its messages."""
    app.client.delete(keys.lease(Q, frozen.id))
    return other.requeue_stale()


def server_move(app: App, c: Consumer, q: str) -> list[bytes] | int | None:
    """What the server does for ``c``'s blocking move once a message is there: the move, and
    (a worker's consumer, off a cluster) the claim pipelined behind it (see waits.py)."""
    if not c._claims:  # a plain move into the processing list; the caller marks it after
        body = app.client.lmove(keys.pending(q), keys.processing(q, c.id), "RIGHT", "LEFT")
        return [body] if body is not None else None  # type: ignore[list-item]
    app.client.lmove(keys.pending(q), keys.inbox(q, c.id), "RIGHT", "LEFT")
    (answer,) = c.scripts.run_many([c._claim_call(q, c.token(q))])
    return answer or None  # type: ignore[no-any-return]


class Clock:
    """A consumer's monotonic clock, moved on by hand (a freeze)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def env_of(m: Message) -> Envelope:
    return Envelope.from_dict(json.loads(m.body))


def settle(app: App, c: Consumer, m: Message, status: str, **outcome: Any) -> int:
    call = app.records.settle_call(c.id, m, env_of(m), Outcome(status, **outcome), c.id,
                                   app.serializer.dumps)
    return int(app.records.settle_many([call])[0])


def status_and_worker(app: App, job_id: str) -> tuple[str, str]:
    rec = app.records.get(Q, job_id)
    return rec.get("status", ""), rec.get("worker", "")


class FencingContract:
    # -- epochs ------------------------------------------------------------------------------
    def test_recovery_ends_the_epoch_and_the_next_renewal_starts_a_new_one(
            self, app: App, caplog: pytest.LogCaptureFixture) -> None:
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        wa.heartbeat()
        first = wa.token(Q)
        assert first and app.client.hget(keys.epochs(Q), "wa") == first.encode()
        wa.heartbeat()
        assert wa.token(Q) == first, "a renewal keeps a live epoch"
        app.enqueue_many("t.x", [((i,), {}) for i in range(2)])
        assert len(wa.reserve(2, timeout_s=0)) == 2 and wa.held() == 2
        app.client.delete(keys.lease(Q, "wa"))
        wa.heartbeat()
        assert wa.token(Q) == first, "an expired lease with nothing recovered keeps its epoch"
        assert expire_and_recover(app, wa, wb) == 2
        assert app.client.hget(keys.epochs(Q), "wa") is None
        with caplog.at_level(logging.WARNING, "redisq.queue"):
            wa.heartbeat()
        second = wa.token(Q)
        assert second not in ("", first)
        assert wa.held() == 0, "what it held went back to the queue: no longer its own"
        assert any("lease on queue default lost" in r.getMessage() for r in caplog.records)
        assert app.client.hget(keys.epochs(Q), "wa") == second.encode()
        assert app.client.sismember(keys.consumers(Q), "wa")
        assert app.client.get(keys.lease(Q, "wa")) == second.encode()

    def test_the_epoch_is_known_locally_only_while_the_lease_cannot_have_expired(
            self, app: App) -> None:
        """No round trip while the last renewal is recent (recovery needs the lease to expire
        first); after a hold-up as long as most of a lease, Redis is asked."""
        now = [1000.0]
        wa = Consumer(app.client, [Q], consumer_id="wa", lease_s=5.0, clock=lambda: now[0],
                      mark_jobs="wa")
        wb = consumer(app, "wb")
        wa.heartbeat()
        token = wa.token(Q)
        assert wa.epoch_known(Q, token) is True and wa.epoch_known(Q, "") is True
        now[0] += 0.8 * 5.0  # e.g. frozen
        assert wa.epoch_known(Q, token) is None
        assert wa.epoch_holds(Q, token) is True
        expire_and_recover(app, wa, wb)
        assert wa.epoch_holds(Q, token) is False
        wa.reserve(1, timeout_s=0)  # renews first: told by epoch_holds that the epoch ended
        assert wa.token(Q) != token and wa.epoch_known(Q, token) is False
        assert wa.epoch_known(Q, wa.token(Q)) is True

    def test_a_clean_release_ends_the_epoch(self, app: App) -> None:
        wa = consumer(app, "wa")
        wa.heartbeat()
        wa.close(release=True)
        assert app.client.hget(keys.epochs(Q), "wa") is None

    # -- reserve -----------------------------------------------------------------------------
    def test_a_batch_reservation_under_an_ended_epoch_moves_nothing(self, app: App) -> None:
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        jobs = app.enqueue_many("t.x", [((i,), {}) for i in range(3)])
        assert len(wa.reserve(1, timeout_s=0)) == 1
        assert expire_and_recover(app, wa, wb) == 1
        assert wa.reserve(5, timeout_s=0) == [], "refused: the epoch ended"
        assert app.client.llen(keys.pending(Q)) == 3
        assert app.client.llen(keys.processing(Q, "wa")) == 0
        assert all(status_and_worker(app, j.id)[0] != "started" or
                   status_and_worker(app, j.id)[1] == "wa" for j in jobs)
        got = wa.reserve(5, timeout_s=0)  # registered again first, under a new epoch
        assert len(got) == 3 and {m.token for m in got} == {wa.token(Q)}
        assert all(status_and_worker(app, j.id) == ("started", "wa") for j in jobs)

    # -- start (blocking moves) --------------------------------------------------------------
    @pytest.mark.parametrize("claims", [True, False], ids=["claimed", "plain"])
    def test_a_blocking_move_answered_while_frozen_is_not_started(
            self, app: App, monkeypatch: pytest.MonkeyPatch, claims: bool) -> None:
        """The server makes the move while the consumer is stopped (claimed: and marks it);
        recovery gives the job to another worker, which finishes it; the frozen consumer then
        reads the reply. Plain: the start step refuses it. Claimed: the consumer's clock says
        it was held up past its lease, so the worker asks before it starts the job (see
        ProdconsWorker._still_ours), and the answer is no."""
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        wa.clock = clock = Clock()
        wa._claims = claims
        wa.heartbeat()
        before = wa.token(Q)
        job_ids: list[str] = []

        def frozen_move(q: str, timeout_s: float, token: str) -> list[bytes] | int | None:
            job_ids.append(app.enqueue("t.x", args=(1,)).id)
            moved = server_move(app, wa, q)
            clock.now += wa.lease_s  # frozen past the lease...
            assert expire_and_recover(app, wa, wb) == 1  # ...which expired: recovered
            (m,) = wb.reserve(1, timeout_s=0)
            assert settle(app, wb, m, "succeeded", result_json="1") == 1
            return moved

        monkeypatch.setattr(wa, "_blmove", frozen_move)
        (m,) = wa.reserve(1, timeout_s=0.1)
        assert m.token == before
        if claims:
            assert m.before == "queued"
            assert wa.epoch_known(Q, m.token) is None, "held up: it must ask"
            assert wa.epoch_holds(Q, m.token) is False
        else:
            assert m.before is None
            assert app.records.start("wa", [env_of(m)], "wa", [m.token or ""]) == [None]
        assert status_and_worker(app, job_ids[0]) == ("succeeded", "wb")

    @pytest.mark.parametrize("claims", [True, False], ids=["claimed", "plain"])
    def test_a_move_that_lands_after_recovery_runs_under_the_next_epoch(
            self, app: App, monkeypatch: pytest.MonkeyPatch, claims: bool) -> None:
        """Recovery first (nothing held), then the server makes the move: the message is in
        no one else's hands. Refused under the old epoch (claimed: by the claim, which puts
        it back in the queue), it is delivered again once the consumer registered anew (plain:
        by the orphan check), and starts then."""
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        wa._claims = claims
        wa.heartbeat()

        def late_move(q: str, timeout_s: float, token: str) -> list[bytes] | int | None:
            expire_and_recover(app, wa, wb)
            app.enqueue("t.x", args=(1,))
            return server_move(app, wa, q)

        monkeypatch.setattr(wa, "_blmove", late_move)
        if claims:
            old = wa.token(Q)
            assert wa.reserve(1, timeout_s=0.1) == []
            assert app.client.llen(keys.pending(Q)) == 1, "back in the queue, unmarked"
            assert not app.client.exists(keys.inbox(Q, "wa"))
            monkeypatch.undo()
            (again,) = wa.reserve(1, timeout_s=0)
            assert again.token == wa.token(Q) != old and again.before == "queued"
        else:
            (m,) = wa.reserve(1, timeout_s=0.1)
            assert app.records.start("wa", [env_of(m)], "wa", [m.token or ""]) == [None]
            wa.forget(m)
            wa.lease_lost(Q, m.token or "")
            monkeypatch.undo()
            (again,) = wa.reserve(1, timeout_s=0)
            assert again.body == m.body and again.token == wa.token(Q) != m.token
            assert app.records.start("wa", [env_of(again)], "wa", [again.token or ""]) == [
                "queued"]
        assert status_and_worker(app, env_of(again).id) == ("started", "wa")

    # -- settle ------------------------------------------------------------------------------
    def test_a_settle_under_an_ended_epoch_writes_and_moves_nothing(self, app: App) -> None:
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        job = app.enqueue("t.x", args=(1,))
        (stale,) = wa.reserve(1, timeout_s=0)
        assert expire_and_recover(app, wa, wb) == 1
        (m,) = wb.reserve(1, timeout_s=0)
        assert settle(app, wa, stale, "succeeded", result_json='"wa"') == SETTLE_FENCED
        assert status_and_worker(app, job.id) == ("started", "wb")
        assert app.client.lrange(keys.processing(Q, "wb"), 0, -1) == [m.body]
        assert settle(app, wb, m, "failed", error_type="E") == 1
        wa.reserve(1, timeout_s=0)  # wa registers again (the refusal told it)
        assert settle(app, wa, stale, "succeeded", result_json='"wa"') == SETTLE_FENCED
        assert status_and_worker(app, job.id) == ("failed", "wb")
        counts = app.queue(Q).counts()
        assert counts.get("succeeded", 0) == 0 and counts["failed"] == 1

    @pytest.mark.parametrize(("theirs", "ours", "answer", "final"), [
        ("succeeded", "failed", SETTLE_DUPLICATE, "succeeded"),
        ("failed", "succeeded", SETTLE_DUPLICATE, "failed"),
        ("retrying", "failed", SETTLE_DUPLICATE, "retrying"),
        ("retrying", "retrying", SETTLE_DUPLICATE, "retrying"),
        ("retrying", "succeeded", 1, "succeeded"),  # done: the waiting retry will be skipped
    ])
    def test_a_late_outcome_of_a_duplicate_never_overwrites_another_workers(
            self, app: App, theirs: str, ours: str, answer: int, final: str) -> None:
        """The same attempt delivered twice (both epochs live): the first outcome stands."""
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        job = app.enqueue("t.x", args=(1,))
        (mine,) = wa.reserve(1, timeout_s=0)
        app.client.rpush(keys.pending(Q), mine.body)  # a duplicate delivery of the message
        (other,) = wb.reserve(1, timeout_s=0)
        assert settle(app, wb, other, theirs, error_type="E", retry_in_s=60,
                      result_json="1") == 1
        assert settle(app, wa, mine, ours, error_type="E", retry_in_s=60,
                      result_json="2") == answer
        assert status_and_worker(app, job.id) == (final, "wb" if answer < 0 else "wa")
        assert app.client.llen(keys.processing(Q, "wa")) == 0, "its copy is settled either way"
        assert app.client.zcard(keys.delayed(Q)) == (theirs == "retrying") + (
            answer == 1 and ours == "retrying")
        if final == "succeeded" and theirs == "retrying":
            app.client.zadd(keys.delayed(Q), {m: 0 for m in app.client.zrange(keys.delayed(Q),
                                                                             0, -1)})
            app.queue(Q).promote_due()
            (retry,) = wb.reserve(1, timeout_s=0)
            assert retry.before == "succeeded", "the retry is skipped: the job is done"

    def test_the_retry_of_another_workers_attempt_settles_normally(self, app: App) -> None:
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        job = app.enqueue("t.x", args=(1,))
        (first,) = wb.reserve(1, timeout_s=0)
        assert settle(app, wb, first, "retrying", error_type="E", retry_in_s=0) == 1
        app.queue(Q).promote_due()
        (second,) = wa.reserve(1, timeout_s=0)
        assert env_of(second).attempt == 2
        assert settle(app, wa, second, "succeeded", result_json="1") == 1
        assert status_and_worker(app, job.id) == ("succeeded", "wa")

    # -- duplicates of a job whose finished record moved to a done bucket --------------------
    def test_a_duplicate_after_the_record_moved_to_a_bucket_is_not_run_again(
            self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        """A succeeded record is no key any more (redisq/backend/finished.py): a copy of its
        message delivered again, by a batch reservation or a blocking move, is reported
        finished and not started, and no record key is made for it."""
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        job = app.enqueue("t.x", args=(1,))
        (m,) = wb.reserve(1, timeout_s=0)
        assert settle(app, wb, m, "succeeded", result_json="1") == 1
        assert not app.client.exists(keys.job(Q, job.id)), "in a done bucket"
        app.client.rpush(keys.pending(Q), m.body)  # delivered again
        (dup,) = wa.reserve(5, timeout_s=0)  # a batch reservation (reserve.lua)
        assert dup.before == "succeeded"
        wa.forget(dup)

        def blocking_move(q: str, timeout_s: float, token: str) -> list[bytes] | int | None:
            app.client.rpush(keys.pending(Q), m.body)  # and once more, while wa waits
            return server_move(app, wa, q)

        monkeypatch.setattr(wa, "_blmove", blocking_move)
        (moved,) = wa.reserve(1, timeout_s=0.1)
        assert moved.token == wa.token(Q)
        assert moved.before == "succeeded"  # the claim (reserve.lua) saw it; and start.lua:
        assert app.records.start("wa", [env_of(moved)], "wa", [moved.token or ""]) == [
            "succeeded"]
        assert not app.client.exists(keys.job(Q, job.id)), "no started record was made"
        # Had a copy run anyway, its outcome would not overwrite the first (settle.lua).
        assert settle(app, wa, moved, "failed", error_type="E") == SETTLE_DUPLICATE
        assert status_and_worker(app, job.id) == ("succeeded", "wb")
        assert not app.client.exists(keys.job(Q, job.id))

    def test_a_settle_repeated_after_a_lost_reply_finds_its_record_in_a_bucket(
            self, app: App) -> None:
        """The same worker settles again (its reply was lost): nothing moves, nothing is
        written twice, and it is not taken for another worker's duplicate."""
        wa = consumer(app, "wa")
        job = app.enqueue("t.x", args=(1,))
        (m,) = wa.reserve(1, timeout_s=0)
        assert settle(app, wa, m, "succeeded", result_json="1") == 1
        assert settle(app, wa, m, "succeeded", result_json="1") == 0
        assert status_and_worker(app, job.id) == ("succeeded", "wa")
        (end,) = app.client.zrange(keys.done(Q), 0, -1)
        assert job_ids_in(app.client, keys.done_bucket(Q, int(end))) == [job.id]
        assert app.queue(Q).counts()["succeeded"] == 1

    # -- the consumer's own bookkeeping ------------------------------------------------------
    def test_settling_a_message_of_an_ended_epoch_keeps_the_new_hold_of_it(self,
                                                                           app: App) -> None:
        """The frozen consumer takes the recovered job again itself: its stale copy's end must
        not count against the new one (which would then be delivered a second time)."""
        wa, wb = consumer(app, "wa"), consumer(app, "wb")
        app.enqueue("t.x", args=(1,))
        (stale,) = wa.reserve(1, timeout_s=0)
        expire_and_recover(app, wa, wb)
        assert wa.reserve(1, timeout_s=0) == []  # refused: learns the epoch ended
        (fresh,) = wa.reserve(1, timeout_s=0)
        assert fresh.body == stale.body and wa.held() == 1
        wa.forget(stale)
        assert wa.held() == 1
        wa.recheck()
        assert wa.reserve(1, timeout_s=0) == [], "no orphan: the new copy is still held"
