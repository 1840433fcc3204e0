"""Schedule math and exactly-once firing with an injected clock (no sleeping)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from redisq import App, keys
from redisq.scheduler import Periodic, Scheduler, periodic_index

PARIS = ZoneInfo("Europe/Paris")


def ts(*args: int, tz: ZoneInfo = PARIS) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def test_every_s_ticks_are_aligned() -> None:
    p = Periodic("t", every_s=60)
    assert p.next_after(119.5) == 120 and p.next_after(120) == 180
    assert p.ticks(100, 300) == [120, 180, 240, 300]


def test_cron_in_a_time_zone_across_dst() -> None:
    p = Periodic("t", cron="30 2 * * *", tz="Europe/Paris")
    # 2026-03-29: clocks jump 02:00 → 03:00 in Paris; 02:30 does not exist that day.
    before = ts(2026, 3, 28, 12, 0)
    nxt = datetime.fromtimestamp(p.next_after(before), PARIS)
    assert nxt.date().isoformat() in ("2026-03-29", "2026-03-30")
    assert nxt.hour in (2, 3)
    ordinary = datetime.fromtimestamp(p.next_after(ts(2026, 6, 1, 12, 0)), PARIS)
    assert (ordinary.day, ordinary.hour, ordinary.minute) == (2, 2, 30)


def test_bad_schedules_fail_at_registration() -> None:
    with pytest.raises(ValueError):
        Periodic("t")
    with pytest.raises(ValueError):
        Periodic("t", cron="* * * * *", every_s=5)
    with pytest.raises(Exception):  # noqa: B017 - croniter's own error type
        Periodic("t", cron="not a cron")
    with pytest.raises(Exception):  # noqa: B017 - zoneinfo's own error type
        Periodic("t", every_s=5, tz="Mars/Olympus")


@pytest.mark.parametrize(("policy", "expected"), [("once", [3300.0]), ("skip", []),
                                                  ("all", [60.0 * i for i in range(1, 56)])])
def test_misfire_after_downtime(policy: str, expected: list[float]) -> None:
    p = Periodic("t", every_s=60, misfire=policy, misfire_grace_s=30)
    assert p.due(0, 3345) == expected  # every tick is older than the grace


def test_takeover_within_grace_fires_every_tick() -> None:
    p = Periodic("t", every_s=1, misfire="once", misfire_grace_s=60)
    assert p.due(100, 103.5) == [101, 102, 103]


def app_with_periodic(r: redis.Redis) -> App:
    app = App("redis://unused")
    app._client = r

    @app.periodic(every_s=10, name="p.report")
    def report() -> None: ...

    return app


def test_two_schedulers_fire_each_tick_once(fake_redis: redis.Redis) -> None:
    app = app_with_periodic(fake_redis)
    a, b = Scheduler(app, client=fake_redis), Scheduler(app, client=fake_redis)
    assert a.tick(1000.0) == [] and b.tick(1000.0) == []  # first pass starts the schedule
    fired = a.tick(1031.0) + b.tick(1031.0)
    assert fired == ["periodic:p.report:1010", "periodic:p.report:1020", "periodic:p.report:1030"]
    assert b.leading is False and a.leading is True
    # The leader dies: its lease expires (here: deleted) and b takes over, losing nothing.
    fake_redis.delete(keys.SCHEDULER_LEADER)
    assert b.tick(1052.0) == ["periodic:p.report:1040", "periodic:p.report:1050"]
    assert a.tick(1052.0) == []
    assert fake_redis.llen(keys.pending("default")) == 5


def test_even_two_leaders_cannot_double_a_tick(fake_redis: redis.Redis) -> None:
    app = app_with_periodic(fake_redis)
    a, b = Scheduler(app, client=fake_redis), Scheduler(app, client=fake_redis)
    a.tick(1000.0)
    a.tick(1001.0)  # a leads
    fake_redis.set(keys.SCHEDULER_LEADER, b.token)  # a lease handover while a still runs
    b.leading = True
    assert len(b.tick(1011.0)) == 1
    a.scripts.run("leader", [keys.SCHEDULER_LEADER], [a.token, 10000])  # a believes it leads
    fake_redis.set(keys.SCHEDULER_LEADER, a.token)
    assert a.tick(1011.0) == []  # the tick's CAS already moved: no double


def test_index_shows_next_run(fake_redis: redis.Redis) -> None:
    app = app_with_periodic(fake_redis)
    Scheduler(app, client=fake_redis).tick(1000.0)
    (row,) = periodic_index(fake_redis)
    assert row["name"] == "p.report" and row["next_at"] == 1010 and row["schedule"] == "every 10 s"
