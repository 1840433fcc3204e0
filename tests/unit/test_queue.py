"""Queue and consumer contract on fakeredis (the same tests run on a real server in
tests/integration/test_queue_contract.py)."""

from __future__ import annotations

import redis

from redisq.backend import keys
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue


def consumer(r: redis.Redis, queues: list[str], cid: str = "c1", lease_s: float = 5.0) -> Consumer:
    return Consumer(r, queues, consumer_id=cid, lease_s=lease_s, block_timeout_s=0.1)


def test_fifo_batch_and_ack(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    assert q.put(b"m0") == 1
    q.put_many(f"m{i}".encode() for i in range(1, 5))
    c = consumer(fake_redis, ["jobs"])
    got = c.reserve(3)
    assert [m.body for m in got] == [b"m0", b"m1", b"m2"]
    assert q.counts()["in_flight"] == 3 and q.depth() == 2
    assert c.ack(got) == 3
    assert q.counts()["acked"] == 3 and q.counts()["in_flight"] == 0


def test_priority_order(fake_redis: redis.Redis) -> None:
    Queue(fake_redis, "default").put_many([b"d1", b"d2"])
    Queue(fake_redis, "high").put_many([b"h1"])
    c = consumer(fake_redis, ["high", "default"])
    assert [m.body for m in c.reserve(2)] == [b"h1", b"d1"]


def test_nack_front_and_bury(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    q.put_many([b"a", b"b"])
    c = consumer(fake_redis, ["jobs"])
    a = c.reserve(1)[0]
    assert c.nack(a) is True
    assert c.nack(a) is False  # no longer held: never requeued twice
    again = c.reserve(1)[0]
    assert again.body == b"a"  # front: taken next
    assert c.bury(again, b'{"reason":"bad"}') is True
    assert q.dead_letters() == [b'{"reason":"bad"}']
    counts = q.counts()
    assert counts["requeued"] == 1 and counts["dead"] == 1 and counts["dead_letters"] == 1


def test_requeue_stale_exactly_once(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    q.put_many([b"x", b"y"])
    dead = consumer(fake_redis, ["jobs"], cid="dead")
    assert len(dead.reserve(2)) == 2
    fake_redis.delete(keys.lease("jobs", "dead"))  # its lease expired
    a, b = consumer(fake_redis, ["jobs"], "a"), consumer(fake_redis, ["jobs"], "b")
    assert a.requeue_stale() + b.requeue_stale() == 2
    assert q.depth() == 2 and q.counts()["recovered"] == 2
    assert [m.body for m in a.reserve(2)] == [b"x", b"y"]  # oldest first


def test_live_consumer_is_not_recovered(fake_redis: redis.Redis) -> None:
    Queue(fake_redis, "jobs").put(b"x")
    alive = consumer(fake_redis, ["jobs"], cid="alive")
    alive.reserve(1)
    assert consumer(fake_redis, ["jobs"], "other").requeue_stale() == 0


def test_orphan_from_lost_reply_is_delivered(fake_redis: redis.Redis) -> None:
    """A move whose reply never arrived leaves the message in our processing list; the next
    reserve after an error or empty wait hands it out."""
    c = consumer(fake_redis, ["jobs"])
    c.reserve(1, timeout_s=0)  # registers, finds nothing
    fake_redis.lpush(keys.processing("jobs", "c1"), b"lost-reply")
    c.recheck()
    assert [m.body for m in c.reserve(5, timeout_s=0)] == [b"lost-reply"]
    assert c.reserve(5, timeout_s=0) == []  # handed out once


def test_delayed_promote_exactly_once(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    q.put_delayed(b"later", 3600)
    q.put_delayed(b"now", 0)
    assert q.promote_due() == 1
    assert q.promote_due() == 0
    assert q.depth() == 1 and q.counts()["delayed"] == 1


def test_scripts_survive_script_flush(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    c = consumer(fake_redis, ["jobs"])
    q.put(b"1")
    assert len(c.reserve(1)) == 1
    fake_redis.script_flush()
    q.put(b"2")
    got = c.reserve(1)
    assert [m.body for m in got] == [b"2"]
    assert c.ack(got) == 1


def test_close_gives_messages_back(fake_redis: redis.Redis) -> None:
    q = Queue(fake_redis, "jobs")
    q.put_many([b"a", b"b"])
    c = consumer(fake_redis, ["jobs"])
    c.reserve(2)
    c.close(release=True)
    assert q.depth() == 2 and q.counts()["in_flight"] == 0
    assert not fake_redis.exists(keys.lease("jobs", "c1"))
