"""The queue/consumer contract, written once and run on fakeredis (tests/unit/test_queue_fake.py)
and on a real server (tests/integration/test_queue_contract.py).

A binding subclasses :class:`QueueContract` as ``Test...`` and provides the fixture ``r``: a
client on an empty database. Nothing here sleeps except the short blocking waits under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisq.backend import keys
from redisq.broker import queue as queue_module
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from redisq.model import Message


def make_consumer(r: redis.Redis, queues: list[str], cid: str = "c1", lease_s: float = 5.0,
                  **kwargs: Any) -> Consumer:
    return Consumer(r, queues, consumer_id=cid, lease_s=lease_s, block_timeout_s=0.2, **kwargs)


def bodies(messages: list[Message]) -> list[bytes]:
    return [m.body for m in messages]


def drain(c: Consumer, limit: int = 100) -> list[Message]:
    """Everything the consumer can take right now, without waiting."""
    out: list[Message] = []
    while got := c.reserve(limit, timeout_s=0):
        out += got
    return out


def fail_once_after(fn: Callable[..., Any], exc: BaseException) -> Callable[..., Any]:
    """``fn`` that runs for real the first time and then raises ``exc``, as a call whose
    reply was lost on the way back; later calls pass through."""
    state = {"armed": True}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if state["armed"]:
            state["armed"] = False
            raise exc
        return result

    return wrapper


def fail_nth(fn: Callable[..., Any], n: int, exc: BaseException) -> Callable[..., Any]:
    """``fn`` whose n-th call (1-based) raises ``exc`` without running."""
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return fn(*args, **kwargs)

    return wrapper


class QueueContract:
    """Tests every binding must pass. Fixture ``r`` comes from the subclass."""

    # -- producing ---------------------------------------------------------------------------
    def test_put_returns_depth_and_put_many_the_count(self, r: redis.Redis) -> None:
        """put answers the depth after it; put_many how many it sent (0 sends nothing)."""
        q = Queue(r, "jobs")
        assert q.put(b"a") == 1
        assert q.put("b") == 2  # str is stored as UTF-8
        assert q.put_many([]) == 0
        assert q.put_many(f"m{i}" for i in range(3)) == 3
        assert q.depth() == 5
        with pytest.raises(TypeError):
            q.put(3)  # type: ignore[arg-type]

    def test_batch_reserve_is_fifo_across_put_and_chunked_put_many(
            self, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        """Messages come out in the order they went in, whatever the batch sizes, also when
        put_many splits its input into several LPUSH chunks."""
        monkeypatch.setattr(queue_module, "PUT_CHUNK", 4)
        q = Queue(r, "jobs")
        q.put(b"m00")
        q.put_many(f"m{i:02d}".encode() for i in range(1, 11))
        q.put(b"m11")
        c = make_consumer(r, ["jobs"])
        got: list[Message] = []
        for n in (1, 3, 5, 100):
            got += c.reserve(n, timeout_s=0)
        assert bodies(got) == [f"m{i:02d}".encode() for i in range(12)]
        assert all(m.queue == "jobs" for m in got)

    def test_reserve_takes_at_most_n_and_nothing_for_n_below_one(self, r: redis.Redis) -> None:
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"])
        assert c.reserve(0) == [] and c.reserve(-1) == []
        assert bodies(c.reserve(2, timeout_s=0)) == [b"a", b"b"]
        assert bodies(c.reserve(5, timeout_s=0)) == [b"c"]
        assert c.held() == 3 and q.depth() == 0

    # -- priority ----------------------------------------------------------------------------
    def test_high_is_drained_before_default(self, r: redis.Redis) -> None:
        """Queues are taken in the order given, one message at a time or in batches."""
        default, high = Queue(r, "default"), Queue(r, "high")
        default.put_many([b"d1", b"d2"])
        high.put_many([b"h1", b"h2"])
        c = make_consumer(r, ["high", "default"])
        assert bodies(c.reserve(1, timeout_s=0)) == [b"h1"]
        high.put(b"h3")  # arrives later than every default message, still goes first
        assert bodies(c.reserve(3, timeout_s=0)) == [b"h2", b"h3", b"d1"]
        assert [(m.queue, m.body) for m in c.reserve(3, timeout_s=0)] == [("default", b"d2")]

    # -- settling ----------------------------------------------------------------------------
    def test_ack_removes_and_counts_once(self, r: redis.Redis) -> None:
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"])
        got = c.reserve(3, timeout_s=0)
        assert q.counts()["in_flight"] == 3
        assert c.ack(got[:2]) == 2
        assert c.ack(got[:2]) == 0  # already gone: not counted again
        counts = q.counts()
        assert counts["acked"] == 2 and counts["in_flight"] == 1 and c.held() == 1

    def test_nack_front_back_and_only_once(self, r: redis.Redis) -> None:
        """front: taken next; back: behind what waits; a second nack moves nothing."""
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"])
        a, b = c.reserve(2, timeout_s=0)
        assert c.nack(a, front=True) is True
        assert c.nack(a) is False
        assert c.nack(b, front=False) is True
        assert bodies(drain(c)) == [b"a", b"c", b"b"]
        assert q.counts()["requeued"] == 2

    def test_bury_dead_letters_with_a_cap(self, r: redis.Redis) -> None:
        """bury moves to the dead list (newest first, capped at dead_max) and counts."""
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"], dead_max=2)
        got = c.reserve(3, timeout_s=0)
        for m in got:
            assert c.bury(m, b"dead:" + m.body) is True
        assert c.bury(got[0], b"again") is False  # not held any more
        assert q.dead_letters() == [b"dead:c", b"dead:b"]
        counts = q.counts()
        assert counts["dead"] == 3 and counts["dead_letters"] == 2 and counts["in_flight"] == 0

    # -- leases ------------------------------------------------------------------------------
    def test_heartbeat_registers_the_consumer_with_a_lease(self, r: redis.Redis) -> None:
        c = make_consumer(r, ["a", "b"], lease_s=3.0)
        c.heartbeat()
        for q in ("a", "b"):
            assert r.sismember(keys.consumers(q), "c1")
            assert 0 < r.pttl(keys.lease(q, "c1")) <= 3000

    def test_requeue_stale_moves_each_message_exactly_once(self, r: redis.Redis) -> None:
        """Two consumers race to recover a dead one: together they move each message once,
        oldest first, and the dead consumer is forgotten."""
        q = Queue(r, "jobs")
        q.put_many([b"x", b"y", b"z"])
        dead = make_consumer(r, ["jobs"], cid="dead")
        assert len(dead.reserve(3, timeout_s=0)) == 3
        r.delete(keys.lease("jobs", "dead"))  # its lease ran out
        a, b = make_consumer(r, ["jobs"], cid="a"), make_consumer(r, ["jobs"], cid="b")
        assert a.requeue_stale() + b.requeue_stale() + a.requeue_stale() == 3
        assert q.counts()["recovered"] == 3
        assert not r.sismember(keys.consumers("jobs"), "dead")
        assert bodies(drain(a)) == [b"x", b"y", b"z"]
        assert dead.ack([Message("jobs", b"x")]) == 0  # too late: it was given to another

    def test_live_consumer_is_not_recovered(self, r: redis.Redis) -> None:
        Queue(r, "jobs").put(b"x")
        alive = make_consumer(r, ["jobs"], cid="alive")
        alive.reserve(1, timeout_s=0)
        assert make_consumer(r, ["jobs"], cid="other").requeue_stale() == 0
        assert r.llen(keys.processing("jobs", "alive")) == 1

    # -- delayed -----------------------------------------------------------------------------
    def test_delayed_messages_are_promoted_once_when_due(self, r: redis.Redis) -> None:
        """Due messages move to the back of the queue exactly once; early ones stay."""
        q = Queue(r, "jobs")
        q.put(b"already-waiting")
        later = q.put_delayed(b"later", 3600)
        now = q.put_delayed(b"now", 0)
        q.put_at(b"past", 1.0)
        assert later - now >= 3_599_000
        assert q.promote_due(limit=1) == 1
        assert q.promote_due() == 1
        assert q.promote_due() == 0
        assert q.counts()["delayed"] == 1
        c = make_consumer(r, ["jobs"])
        assert bodies(drain(c)) == [b"already-waiting", b"past", b"now"]

    # -- survival ----------------------------------------------------------------------------
    def test_every_script_survives_script_flush(self, r: redis.Redis) -> None:
        """After SCRIPT FLUSH (or a restart that lost the cache) each step reloads itself."""
        q = Queue(r, "jobs")
        c = make_consumer(r, ["jobs"])
        q.put_many([b"1", b"2", b"3"])
        q.put_delayed(b"d", 0)
        r.script_flush()
        assert q.promote_due() == 1
        r.script_flush()
        a, b, d, e = c.reserve(4, timeout_s=0)
        r.script_flush()
        assert c.ack([a]) == 1
        r.script_flush()
        assert c.nack(b) is True
        r.script_flush()
        assert c.bury(d, b"x") is True
        r.script_flush()
        q.put_delayed(b"d2", 3600)
        assert q.counts()["delayed"] == 1 and c.held() == 1 and e.body == b"d"

    # -- lost replies ------------------------------------------------------------------------
    def test_orphan_found_after_an_empty_wait(self, r: redis.Redis) -> None:
        """A message moved into our processing list whose reply never came (a BLMOVE answered
        into a dead socket) is delivered once, on the reserve after an empty wait."""
        c = make_consumer(r, ["jobs"])
        assert c.reserve(1, timeout_s=0) == []
        Queue(r, "jobs").put(b"lost-reply")
        r.lmove(keys.pending("jobs"), keys.processing("jobs", "c1"), "RIGHT", "LEFT")
        assert c.reserve(1, timeout_s=0.05) == []  # the empty wait
        assert bodies(c.reserve(5, timeout_s=0)) == [b"lost-reply"]
        assert c.reserve(5, timeout_s=0.05) == []
        assert c.reserve(5, timeout_s=0) == []  # handed out once only

    def test_lost_reply_of_a_batch_reserve_is_delivered_next(self, r: redis.Redis) -> None:
        """The reserve step ran but its reply was lost: reserve returns [] (never raises) and
        the next call hands out those very messages, in order, once."""
        Queue(r, "jobs").put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"])
        c.scripts.run_many = fail_once_after(c.scripts.run_many,  # type: ignore[method-assign]
                                             redis.ConnectionError("reply lost"))
        assert c.reserve(2, timeout_s=0) == []
        assert c.outage.down
        assert bodies(c.reserve(5, timeout_s=0)) == [b"a", b"b", b"c"]
        assert c.outage.reconnects == 1
        assert c.reserve(5, timeout_s=0.05) == [] and c.reserve(5, timeout_s=0) == []

    def test_lost_reply_of_a_blocking_move_is_delivered_next(self, r: redis.Redis) -> None:
        Queue(r, "jobs").put(b"m")
        c = make_consumer(r, ["jobs"])
        c.reserve(1, timeout_s=0)  # took m
        Queue(r, "jobs").put(b"blocked")
        c._take_batch = lambda n: []  # type: ignore[method-assign]  # force the blocking path
        c._blmove = fail_once_after(c._blmove,  # type: ignore[method-assign]
                                    redis.TimeoutError("reply lost"))
        assert c.reserve(1, timeout_s=0.1) == []
        assert bodies(c.reserve(1, timeout_s=0.1)) == [b"blocked"]

    def test_messages_taken_before_a_failure_in_the_same_call_are_not_stranded(
            self, r: redis.Redis) -> None:
        """Orphans found at the start of a reserve, then a failing batch step: the orphans
        must come out on a later call (not stay held, unseen, kept alive by our lease)."""
        q = Queue(r, "jobs")
        c = make_consumer(r, ["jobs"])
        c.reserve(1, timeout_s=0)
        q.put_many([b"orphan", b"fresh"])
        r.lmove(keys.pending("jobs"), keys.processing("jobs", "c1"), "RIGHT", "LEFT")
        c.recheck()
        c.scripts.run_many = fail_nth(c.scripts.run_many, 1,  # type: ignore[method-assign]
                                      redis.ConnectionError("down"))
        assert c.reserve(5, timeout_s=0) == []
        assert c.held() == 0
        assert sorted(bodies(drain(c))) == [b"fresh", b"orphan"]
        assert q.counts()["in_flight"] == 2 and c.held() == 2

    def test_first_queue_taken_then_second_fails_is_not_stranded(self, r: redis.Redis) -> None:
        """A batch across queues: 'high' answered, 'low' failed; what 'high' gave comes out
        on the next reserve."""
        Queue(r, "high").put(b"h")
        Queue(r, "low").put(b"l")
        c = make_consumer(r, ["high", "low"])
        c.scripts.run_many = fail_nth(c.scripts.run_many, 2,  # type: ignore[method-assign]
                                      redis.ConnectionError("down"))
        assert c.reserve(5, timeout_s=0) == []
        assert bodies(drain(c)) == [b"h", b"l"]

    def test_more_orphans_than_asked_for(self, r: redis.Redis) -> None:
        """n orphans are handed out (oldest first), the rest go back to the front of the
        queue; every one is delivered exactly once."""
        q = Queue(r, "jobs")
        c = make_consumer(r, ["jobs"])
        c.reserve(1, timeout_s=0)
        q.put_many([f"o{i}".encode() for i in range(5)])
        for _ in range(5):
            r.lmove(keys.pending("jobs"), keys.processing("jobs", "c1"), "RIGHT", "LEFT")
        q.put(b"later")
        c.recheck()
        assert bodies(c.reserve(2, timeout_s=0)) == [b"o0", b"o1"]
        assert bodies(drain(c)) == [b"o2", b"o3", b"o4", b"later"]
        assert q.counts()["in_flight"] == 6

    # -- stats and shutdown ------------------------------------------------------------------
    def test_counts(self, r: redis.Redis) -> None:
        """counts() reports depth, in-flight (all consumers), delayed, dead letters,
        consumers and the counters of every settle kind."""
        q = Queue(r, "jobs")
        q.put_many([f"m{i}".encode() for i in range(6)])
        q.put_delayed(b"d", 3600)
        a, b = make_consumer(r, ["jobs"], cid="a"), make_consumer(r, ["jobs"], cid="b")
        ga, gb = a.reserve(3, timeout_s=0), b.reserve(2, timeout_s=0)
        a.ack(ga[:1])
        a.nack(ga[1])
        b.bury(gb[0], b"dead")
        counts = q.counts()
        expected = {"depth": 2, "in_flight": 2, "delayed": 1, "dead_letters": 1,
                    "consumers": 2, "acked": 1, "requeued": 1, "dead": 1}
        assert {k: counts[k] for k in expected} == expected
        assert Queue(r, "empty").counts() == {"depth": 0, "delayed": 0, "dead_letters": 0,
                                              "in_flight": 0, "consumers": 0}

    def test_close_release_gives_messages_back_at_once(self, r: redis.Redis) -> None:
        """close(release=True): held messages return to the front in order, the lease and
        registration go, and another consumer takes them without waiting for a lease."""
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"], lease_s=60)
        assert len(c.reserve(2, timeout_s=0)) == 2
        c.close(release=True)
        assert q.counts()["in_flight"] == 0 and q.depth() == 3
        assert not r.exists(keys.lease("jobs", "c1"))
        assert not r.sismember(keys.consumers("jobs"), "c1")
        assert c.held() == 0
        assert bodies(drain(make_consumer(r, ["jobs"], cid="next"))) == [b"a", b"b", b"c"]

    def test_close_without_release_keeps_messages_for_the_lease(self, r: redis.Redis) -> None:
        q = Queue(r, "jobs")
        q.put(b"a")
        c = make_consumer(r, ["jobs"])
        c.reserve(1, timeout_s=0)
        c.close(release=False)
        assert q.counts()["in_flight"] == 1

    def test_purge_drops_pending_only(self, r: redis.Redis) -> None:
        q = Queue(r, "jobs")
        q.put_many([b"a", b"b", b"c"])
        c = make_consumer(r, ["jobs"])
        c.reserve(1, timeout_s=0)
        assert q.purge() == 2
        assert q.depth() == 0 and q.counts()["in_flight"] == 1
