"""The limits steps on a real server (ctl): ``gate.lua`` (GCRA rate limit with a slot per
throttled job, leased concurrency semaphore, the epoch fence) and ``limit_release.lua``."""

from __future__ import annotations

import itertools
import time

import redis

from redisq.backend import control, keys
from redisq.backend.scripts import Scripts

Q, TASK, C = "gq", "t.limited", "consumer-1"


def _reserve(r: redis.Redis, job_id: str) -> bytes:
    """A job's message in C's processing list, its record started (as reserve.lua leaves it)."""
    body = f'{{"id":"{job_id}","task":"{TASK}","queue":"{Q}","attempt":1}}'.encode()
    r.lpush(keys.processing(Q, C), body)
    r.hset(keys.job(Q, job_id), mapping={"status": "started"})
    return body


def _gate(s: Scripts, r: redis.Redis, job_id: str, interval_ms: float = 0, limit: int = 0,
          lease_ms: int = 5000, token: str = "") -> int:
    body = _reserve(r, job_id)
    return int(s.run(*control.gate_call(C, Q, TASK, job_id, body, token, interval_ms, limit,
                                        lease_ms, "1.0")))


def test_rate_gives_each_throttled_job_its_own_slot(real_redis: redis.Redis) -> None:
    s = Scripts(real_redis)
    assert _gate(s, real_redis, "a", interval_ms=100) == 0  # the first start is free
    waits = [_gate(s, real_redis, j, interval_ms=100) for j in ("b", "c", "d")]
    # One slot each, exactly 100 ms apart, not all at the next free one.
    assert all(w > 0 for w in waits) and waits == sorted(waits)
    slots = [float(real_redis.hget(keys.rate_slots(Q, TASK), j) or 0) for j in ("b", "c", "d")]
    assert [b - a for a, b in itertools.pairwise(slots)] == [100.0, 100.0]
    for j in ("b", "c", "d"):  # out of the worker's hands, into the delayed set, throttled
        assert real_redis.hget(keys.job(Q, j), "status") == b"throttled"
    assert real_redis.zcard(keys.delayed(Q)) == 3 and real_redis.llen(keys.processing(Q, C)) == 1
    assert real_redis.hget(keys.stats(Q), "throttled") == b"3"
    # b comes back when its slot has come: it starts (its reserved slot, not a new one).
    time.sleep(0.12)
    assert _gate(s, real_redis, "b", interval_ms=100) == 0
    assert real_redis.hget(keys.rate_slots(Q, TASK), "b") is None


def test_concurrency_semaphore_lease_and_release(real_redis: redis.Redis) -> None:
    s = Scripts(real_redis)
    assert _gate(s, real_redis, "a", limit=2, lease_ms=300) == 0
    assert _gate(s, real_redis, "b", limit=2, lease_ms=5000) == 0
    wait = _gate(s, real_redis, "c", limit=2)
    assert 0 < wait <= 300  # until the earliest holder's lease ends
    assert real_redis.zcard(keys.waiting(Q, TASK)) == 1
    # Release of b: the slot back, c moved from the delayed set to the front of the queue.
    assert s.run(*control.release_call(Q, TASK, "b")) == 1
    assert real_redis.zcard(keys.delayed(Q)) == 0
    assert real_redis.lindex(keys.pending(Q), -1) is not None
    assert real_redis.zrange(keys.running(Q, TASK), 0, -1) == [b"a"]
    # a's holder is "killed" (never renewed nor released): its slot frees with its lease.
    assert _gate(s, real_redis, "d", limit=2) == 0
    assert _gate(s, real_redis, "e", limit=2) > 0
    time.sleep(0.35)
    assert _gate(s, real_redis, "f", limit=2) == 0
    assert set(real_redis.zrange(keys.running(Q, TASK), 0, -1)) == {b"d", b"f"}


def test_release_skips_waiters_that_already_left_the_delayed_set(real_redis: redis.Redis) -> None:
    s = Scripts(real_redis)
    assert _gate(s, real_redis, "a", limit=1) == 0
    assert _gate(s, real_redis, "b", limit=1) > 0
    real_redis.delete(keys.delayed(Q))  # b was promoted (or cancelled) meanwhile
    assert s.run(*control.release_call(Q, TASK, "a")) == 0
    assert real_redis.llen(keys.pending(Q)) == 0 and real_redis.zcard(keys.waiting(Q, TASK)) == 0


def test_gate_is_fenced_by_the_epoch(real_redis: redis.Redis) -> None:
    s = Scripts(real_redis)
    real_redis.hset(keys.epochs(Q), C, "new-epoch")
    assert _gate(s, real_redis, "a", limit=1, token="old-epoch") == -1
    assert real_redis.zcard(keys.running(Q, TASK)) == 0  # nothing taken


def test_a_throttled_job_can_be_cancelled_or_aborted(real_redis: redis.Redis,
                                                     redis_url: str) -> None:
    from redisq import App

    app = App(redis_url)
    job = app.enqueue("t.limited", queue=Q)
    real_redis.zadd(keys.delayed(Q), {real_redis.rpop(keys.pending(Q)): 1})
    real_redis.hset(keys.job(Q, job.id), "status", "throttled")
    assert job.abort() == "cancelled"
    assert job.status == "cancelled" and real_redis.zcard(keys.delayed(Q)) == 0
    app.close()


def test_a_new_rate_starts_afresh(real_redis: redis.Redis) -> None:
    """Redeployed from 1/h to 10/s: the old arrival time (an hour ahead) does not hold."""
    s = Scripts(real_redis)
    assert _gate(s, real_redis, "a", interval_ms=3_600_000) == 0
    assert _gate(s, real_redis, "b", interval_ms=3_600_000) > 3_000_000  # an hour's slot
    assert _gate(s, real_redis, "c", interval_ms=100) == 0  # the new rate: no old debt
    assert real_redis.hget(keys.rate_slots(Q, TASK), "b") is None  # old slots dropped
    assert 0 < _gate(s, real_redis, "d", interval_ms=100) <= 100


def test_late_slots_do_not_catch_up_in_a_burst(real_redis: redis.Redis) -> None:
    """Jobs that come back long after their slots (a stalled worker) start at most
    tolerance / interval + 1 at once (50 ms / 20 ms: 3); the others get new, distinct slots."""
    s = Scripts(real_redis)
    assert _gate(s, real_redis, "a", interval_ms=20) == 0
    late = ["b", "c", "d", "e", "f"]
    assert all(_gate(s, real_redis, j, interval_ms=20) > 0 for j in late)
    time.sleep(0.2)  # every reserved slot is now in the past
    waits = [_gate(s, real_redis, j, interval_ms=20) for j in late]
    assert waits[:3] == [0, 0, 0] and all(w > 0 for w in waits[3:])
    slots = [float(real_redis.hget(keys.rate_slots(Q, TASK), j) or 0) for j in ("e", "f")]
    assert slots[1] - slots[0] == 20.0
