"""A unique job's key on a real server: its lease covers the job's delay (a key that expired
before a delayed job ran would let a duplicate in), and a key that outlived its job (record
lost, job over) never refuses new jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from redisq import App, config
from redisq.aio import AsyncProducer
from redisq.backend import keys
from redisq.worker.prodcons import Worker
from tests.support.cluster import ClusterSet

DAY_S = 86_400.0


@pytest.fixture
def uapp(redis_url: str) -> Iterator[App]:
    app = App(redis_url)

    @app.task(name="u.sync", unique_by=["account"], timeout_s=60, retries=2,
              retry_backoff_cap_s=30)
    def sync(account: int) -> int:
        return account

    yield app
    app.close()


def _unique_key(app: App, account: int) -> str:
    return keys.unique("default", f"u.sync:[{account}]")


def test_the_lease_covers_the_delay(uapp: App, real_redis: redis.Redis) -> None:
    """Due in two days: the key lives past then (before: a flat 24 h, so from the second day
    on an equal job was accepted next to the one still waiting)."""
    uapp.enqueue("u.sync", [1], delay_s=2 * DAY_S)
    ttl_s = real_redis.pttl(_unique_key(uapp, 1)) / 1000
    assert 2 * DAY_S + DAY_S - 5 <= ttl_s <= 2 * DAY_S + DAY_S + 5
    # Not delayed: the lease is the day of queue time (the tries, 3 x 60 s + 2 x 30 s, fit in it).
    uapp.enqueue("u.sync", [2])
    assert DAY_S - 5 <= real_redis.pttl(_unique_key(uapp, 2)) / 1000 <= DAY_S


def test_a_delayed_duplicate_is_refused_while_its_twin_waits(uapp: App) -> None:
    first = uapp.enqueue("u.sync", [3], delay_s=60)
    again = uapp.enqueue("u.sync", [3])
    assert again.id == first.id and not again.created


def test_a_key_whose_job_is_gone_does_not_refuse_new_jobs(uapp: App,
                                                          real_redis: redis.Redis) -> None:
    """The record of the delayed job that held the key is lost (evicted, deleted by hand) and
    its message with it: the next equal job is queued instead of being refused for a day."""
    lost = uapp.enqueue("u.sync", [4], delay_s=3600)
    real_redis.delete(keys.job("default", lost.id))
    real_redis.delete(keys.delayed("default"))
    fresh = uapp.enqueue("u.sync", [4])
    assert fresh.created and fresh.id != lost.id
    assert real_redis.get(_unique_key(uapp, 4)) == fresh.id.encode()


def test_a_key_left_by_a_finished_job_is_taken_over(uapp: App,
                                                    real_redis: redis.Redis) -> None:
    done = uapp.enqueue("u.sync", [5])
    assert Worker(uapp, config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 1}, {})
                  ).run() == 0
    assert done.result(2) == 5
    assert real_redis.exists(_unique_key(uapp, 5)) == 0  # the settle deleted it, as before
    real_redis.set(_unique_key(uapp, 5), done.id, px=3_600_000)  # ...a key that outlived it
    again = uapp.enqueue("u.sync", [5])
    assert again.created and again.id != done.id


def test_the_asyncio_producer_uses_the_same_lease(uapp: App, real_redis: redis.Redis) -> None:
    async def go() -> None:
        producer = AsyncProducer(uapp)
        try:
            await producer.enqueue("u.sync", [6], delay_s=3 * DAY_S)
        finally:
            await producer.close()

    asyncio.run(go())
    assert real_redis.pttl(_unique_key(uapp, 6)) / 1000 >= 3 * DAY_S + DAY_S - 5


def test_takeover_on_a_cluster(cluster: ClusterSet) -> None:
    """The holder's record is looked up inside the script from the queue's record prefix:
    same hash tag, same slot, so it works on Redis Cluster too."""
    app = App(cluster.url)

    @app.task(name="u.sync", unique_by=["account"])
    def sync(account: int) -> int:
        return account

    lost = app.enqueue("u.sync", [7], delay_s=3600)
    assert not app.enqueue("u.sync", [7]).created  # still waiting: refused
    app.client.delete(keys.job("default", lost.id))
    assert app.enqueue("u.sync", [7]).created
    app.close()


def test_a_periodic_tick_takes_over_a_stale_key(redis_url: str, real_redis: redis.Redis) -> None:
    """A unique periodic task whose last run's record is gone: the next tick is queued, not
    skipped until the key's lease (a day) runs out."""
    from redisq.worker.scheduler import Scheduler

    app = App(redis_url)

    @app.periodic(name="p.only", every_s=10, unique_by=lambda: "only")
    def only() -> None: ...

    s = Scheduler(app)
    s.tick(1000.0)
    first = s.tick(1010.0)
    assert first == ["periodic:p.only:1010"]
    assert s.tick(1020.0) == []  # the 1010 run is still queued: that tick is spent
    real_redis.delete(keys.job("default", first[0]))  # its record is lost
    assert s.tick(1030.0) == ["periodic:p.only:1030"]
    app.close()
