"""Queue behaviour that needs a real server: blocking waits and their wake-up latency, real
concurrency between consumers, and close(release=True) with waits outstanding."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from redisq.backend import keys
from redisq.backend.connection import ConnectionOptions, connect
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from redisq.model import Message
from tests.support.wait import wait_until

OPTIONS = ConnectionOptions(block_timeout_s=1.0, read_margin_s=0.5, connect_timeout_s=1.0)
WAKE_S = 0.15  # "wakes within ~100 ms"; the extra 50 ms is scheduling slack, not a sleep


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url, "test", OPTIONS)
    yield c
    c.close()


def blocked_moves(admin: redis.Redis) -> int:
    """Connections of the server blocked in BLMOVE right now."""
    return sum(1 for c in admin.client_list() if c.get("cmd") == "blmove" and "b" in c["flags"])


def reserve_in_thread(c: Consumer, timeout_s: float) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        out["got"] = c.reserve(1, timeout_s=timeout_s)
        out["at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("target", ["high", "low"])
def test_blocked_on_two_empty_queues_wakes_on_either(client: redis.Redis, real_redis: redis.Redis,
                                                     target: str) -> None:
    """A consumer waiting on two empty queues returns within ~100 ms of a put on either."""
    c = Consumer(client, ["high", "low"], consumer_id="w", block_timeout_s=0.5)
    try:
        t, out = reserve_in_thread(c, timeout_s=1.0)
        wait_until(lambda: blocked_moves(real_redis) == 2, 2, what="both queues blocked")
        put_at = time.monotonic()
        Queue(real_redis, target).put(b"wake")
        t.join(2)
        got = out["got"]
        assert isinstance(got, list) and [(m.queue, m.body) for m in got] == [(target, b"wake")]
        latency = float(out["at"]) - put_at  # type: ignore[arg-type]
        print(f"woke {latency * 1000:.1f} ms after the put on {target!r}")
        assert latency < WAKE_S, f"woke after {latency * 1000:.0f} ms"
    finally:
        c.close()


def test_blocked_on_one_queue_wakes_at_once(client: redis.Redis, real_redis: redis.Redis) -> None:
    c = Consumer(client, ["solo"], consumer_id="w", block_timeout_s=1.0)
    t, out = reserve_in_thread(c, timeout_s=1.0)
    wait_until(lambda: blocked_moves(real_redis) == 1, 2, what="the blocking move")
    put_at = time.monotonic()
    Queue(real_redis, "solo").put(b"wake")
    t.join(2)
    assert float(out["at"]) - put_at < WAKE_S  # type: ignore[arg-type]


def test_close_release_with_waits_outstanding_loses_nothing(client: redis.Redis,
                                                             real_redis: redis.Redis) -> None:
    """close(release=True) while per-queue waits are still blocked: a message one of them
    takes during the close goes back to its queue, and held ones too."""
    Queue(real_redis, "a").put(b"held")
    c = Consumer(client, ["a", "b"], consumer_id="w", lease_s=60, block_timeout_s=0.5)
    assert [m.body for m in c.reserve(1, timeout_s=0)] == [b"held"]
    assert c.reserve(1, timeout_s=0.05) == []  # leaves a wait blocked on each queue
    wait_until(lambda: blocked_moves(real_redis) == 2, 2, what="both waits blocked")
    Queue(real_redis, "b").put(b"taken-during-close")
    c.close(release=True)
    assert real_redis.llen(keys.processing("a", "w")) == 0
    assert real_redis.llen(keys.processing("b", "w")) == 0
    other = Consumer(client, ["a", "b"], consumer_id="other", block_timeout_s=0.2)
    assert sorted(m.body for m in other.reserve(5, timeout_s=0)) == [b"held",
                                                                     b"taken-during-close"]
    other.close()


def test_consumers_racing_to_recover_move_each_message_once(client: redis.Redis,
                                                            real_redis: redis.Redis) -> None:
    """Eight consumers start requeue_stale at the same instant on a dead consumer's 50
    messages: 50 moved in total, each exactly once."""
    q = Queue(client, "jobs")
    q.put_many(f"m{i}".encode() for i in range(50))
    dead = Consumer(client, ["jobs"], consumer_id="dead", block_timeout_s=0.2)
    assert len(dead.reserve(50, timeout_s=0)) == 50
    real_redis.delete(keys.lease("jobs", "dead"))
    racers = [Consumer(client, ["jobs"], consumer_id=f"r{i}") for i in range(8)]
    barrier = threading.Barrier(len(racers))
    moved: list[int] = []

    def race(c: Consumer) -> None:
        barrier.wait()
        moved.append(c.requeue_stale())

    threads = [threading.Thread(target=race, args=(c,)) for c in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sum(moved) == 50 and sorted(moved)[-1] == 50  # one racer did it all
    pending = real_redis.lrange(keys.pending("jobs"), 0, -1)
    assert sorted(pending) == sorted(f"m{i}".encode() for i in range(50))


def test_concurrent_promote_due_moves_each_message_once(client: redis.Redis,
                                                        real_redis: redis.Redis) -> None:
    q = Queue(client, "jobs")
    for i in range(200):
        q.put_delayed(f"d{i}".encode(), 0)
    barrier = threading.Barrier(8)
    moved: list[int] = []

    def promote() -> None:
        barrier.wait()
        moved.append(Queue(client, "jobs").promote_due(limit=30))
        while n := Queue(client, "jobs").promote_due(limit=30):
            moved.append(n)

    threads = [threading.Thread(target=promote) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sum(moved) == 200
    assert Counter(real_redis.lrange(keys.pending("jobs"), 0, -1)) == Counter(
        f"d{i}".encode() for i in range(200))


def test_competing_consumers_share_without_duplicates(client: redis.Redis) -> None:
    """Four consumers drain 2,000 messages concurrently: each message is delivered once."""
    Queue(client, "jobs").put_many(f"m{i}".encode() for i in range(2000))
    seen: list[Message] = []
    lock = threading.Lock()

    def work(cid: str) -> None:
        c = Consumer(client, ["jobs"], consumer_id=cid, block_timeout_s=0.1)
        while got := c.reserve(25, timeout_s=0):
            c.ack(got)
            with lock:
                seen.extend(got)

    threads = [threading.Thread(target=work, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(8)
    counts = Counter(m.body for m in seen)
    assert len(counts) == 2000 and max(counts.values()) == 1
    assert Queue(client, "jobs").counts()["acked"] == 2000
