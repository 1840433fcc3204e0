"""The queue index stays bounded: idle empty queues drop out, names that are not valid queue
names are never shown, and a snapshot of many queues costs a fixed number of round trips."""

from __future__ import annotations

import time

import pytest
import redis

from redisq import App
from redisq.backend import index, keys
from redisq.ops.stats import snapshot
from tests.support.inproc import running
from tests.support.wait import wait_until

DAY_S = 86_400.0


def test_idle_empty_queues_drop_out_and_busy_ones_stay(app: App,
                                                        real_redis: redis.Redis) -> None:
    app.enqueue("t.any", queue="busy")  # a job waits: never dropped
    index.touch(real_redis, ["junk1", "junk2", "dead-only", "consumed"], now=time.time() - 9 * DAY_S)
    real_redis.lpush(keys.dead("dead-only"), b"{}")  # dead letters are kept for inspection
    real_redis.sadd(keys.consumers("consumed"), "w1")  # a worker may hold messages
    real_redis.hset(keys.stats("junk1"), "enqueued", 3)
    # Make "busy" old too: what keeps it is its job, not its activity time.
    real_redis.zadd(keys.QUEUES_SEEN, {"busy": time.time() - 9 * DAY_S})

    dropped = index.prune(real_redis, idle_s=8 * DAY_S)

    assert sorted(dropped) == ["junk1", "junk2"]
    assert index.known(real_redis) == ["busy", "consumed", "dead-only"]
    assert real_redis.zscore(keys.QUEUES_SEEN, "junk1") is None
    assert not real_redis.exists(keys.stats("junk1"))  # no counters left behind


def test_recently_active_queues_stay_and_old_entries_get_a_time(app: App,
                                                               real_redis: redis.Redis) -> None:
    index.touch(real_redis, ["fresh"])
    real_redis.sadd(keys.QUEUES, "from-an-older-version")  # indexed without an activity time
    assert index.prune(real_redis, idle_s=60.0) == []
    assert real_redis.zscore(keys.QUEUES_SEEN, "from-an-older-version") is not None
    assert index.known(real_redis) == ["fresh", "from-an-older-version"]


def test_a_write_racing_the_prune_puts_the_queue_back(app: App, real_redis: redis.Redis,
                                                       monkeypatch: object) -> None:
    """A producer writes between the emptiness check and the removal: the queue comes back."""
    index.touch(real_redis, ["racy"], now=time.time() - 9 * DAY_S)
    checks = []
    real_in_use = index._in_use

    def in_use_then_write(client: redis.Redis, queues: list[str]) -> list[bool]:
        result = real_in_use(client, queues)
        if not checks:
            client.lpush(keys.pending("racy"), b"{}")
        checks.append(queues)
        return result

    monkeypatch.setattr(index, "_in_use", in_use_then_write)  # type: ignore[attr-defined]
    assert index.prune(real_redis, idle_s=8 * DAY_S) == []
    assert index.known(real_redis) == ["racy"]


def test_producers_refresh_and_workers_prune(app: App, real_redis: redis.Redis) -> None:
    """A producer registers a queue on its first write; a worker's heartbeat refreshes its own
    queues and prunes idle ones (its prune runs at start, then every PRUNE_EVERY_S)."""
    app.enqueue("t.any", queue="q-made")
    assert real_redis.zscore(keys.QUEUES_SEEN, "q-made") is not None
    index.touch(real_redis, ["stale"], now=time.time() - 30 * DAY_S)
    with running(app, queues=["q-worked"]):
        wait_until(lambda: "stale" not in index.known(real_redis), timeout_s=5)
        assert "q-worked" in index.known(real_redis)
    assert "q-made" in index.known(real_redis)  # its job still waits (nobody consumes q-made)


def test_readers_skip_names_that_are_not_queue_names(app: App,
                                                     real_redis: redis.Redis) -> None:
    """Something other than redisq wrote an escape sequence into the index: `redisq info`, the
    dashboard and metrics must not show it (nor reach its keys)."""
    real_redis.sadd(keys.QUEUES, "\x1b[2Jevil", "fine")
    assert index.known(real_redis) == ["fine"]
    assert list(snapshot(real_redis)["queues"]) == ["fine"]
    assert app.queues() == ["fine"]


def test_a_snapshot_of_many_queues_is_a_few_round_trips(app: App, real_redis: redis.Redis,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: two round trips per queue took 287 ms for 1,000 queues."""
    names = [f"q{i:04d}" for i in range(1000)]
    index.touch(real_redis, names)
    real_redis.lpush(keys.pending("q0007"), b"x", b"y")
    real_redis.sadd(keys.consumers("q0007"), "c1")
    real_redis.lpush(keys.processing("q0007", "c1"), b"z")
    trips = []
    execute_command, execute = redis.Redis.execute_command, redis.client.Pipeline.execute

    def single(self: redis.Redis, *args: object, **kwargs: object) -> object:
        trips.append(args[0])
        return execute_command(self, *args, **kwargs)

    def batch(self: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
        trips.append("pipeline")
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", single)
    monkeypatch.setattr(redis.client.Pipeline, "execute", batch)
    snap = snapshot(real_redis)
    assert snap["queues"]["q0007"]["depth"] == 2
    assert snap["queues"]["q0007"]["in_flight"] == 1
    assert snap["queues"]["q0999"]["depth"] == 0
    assert len(trips) <= 10, trips  # index, counts (2), clock, due counts, workers, periodic
