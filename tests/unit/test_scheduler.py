"""Schedule math and exactly-once firing with an injected clock (no sleeping), on fakeredis."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from redis.crc import key_slot

from redisq import App
from redisq.backend import keys
from redisq.ops.stats import periodic_index
from redisq.periodic import MAX_CATCH_UP, Periodic
from redisq.worker.scheduler import Scheduler

PARIS = ZoneInfo("Europe/Paris")


def ts(*args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=PARIS, fold=fold).timestamp()


def wall(t: float) -> str:
    return datetime.fromtimestamp(t, PARIS).isoformat()


# -- schedule math -------------------------------------------------------------------------
def test_every_s_ticks_are_aligned_on_the_epoch() -> None:
    p = Periodic("t", every_s=60)
    assert p.next_after(119.5) == 120 and p.next_after(120) == 180
    assert p.prev_before(120) == 60 and p.last_until(120) == 120 and p.last_until(179.9) == 120
    assert p.ticks(100, 300) == [120, 180, 240, 300]
    tenth = Periodic("t", every_s=0.1)  # 0.3 / 0.1 = 2.9999...: still the tick 0.3
    assert tenth.last_until(0.3) == 0.3 and tenth.next_after(0.3) == 0.4
    assert tenth.ticks(0, 0.5) == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_cron_ticks_in_the_time_zone() -> None:
    p = Periodic("t", cron="0 9 * * *", tz="Europe/Paris")
    nxt = p.next_after(ts(2026, 6, 1, 8, 59, 59) + 0.5)
    assert wall(nxt) == "2026-06-01T09:00:00+02:00"
    assert p.next_after(nxt) == ts(2026, 6, 2, 9, 0)  # strictly after a tick
    assert p.last_until(nxt) == nxt and p.prev_before(nxt) == ts(2026, 5, 31, 9, 0)


def test_cron_spring_forward_runs_a_missing_time_once_after_the_gap() -> None:
    p = Periodic("t", cron="30 2 * * *", tz="Europe/Paris")
    # 2026-03-29: clocks jump 02:00 → 03:00 in Paris; 02:30 does not exist that day.
    got = p.ticks(ts(2026, 3, 28, 12, 0), ts(2026, 3, 31, 12, 0))
    assert [wall(t) for t in got] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                                      "2026-03-31T02:30:00+02:00"]


def test_cron_fall_back_fixed_time_runs_once_wildcard_runs_each_time() -> None:
    # 2026-10-25: clocks go back 03:00 → 02:00 in Paris; 02:00-02:59 happens twice.
    daily = Periodic("t", cron="30 2 * * *", tz="Europe/Paris")
    got = daily.ticks(ts(2026, 10, 24, 12, 0), ts(2026, 10, 26, 12, 0))
    assert [wall(t) for t in got] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert daily.next_after(got[0]) == got[1] and daily.prev_before(got[1]) == got[0]
    half_hourly = Periodic("t", cron="*/30 * * * *", tz="Europe/Paris")
    got = half_hourly.ticks(ts(2026, 10, 25, 1, 45), ts(2026, 10, 25, 3, 0))
    assert [wall(t) for t in got] == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert [half_hourly.next_after(t) for t in got[:-1]] == got[1:]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of"), ({"cron": "* * * * *", "every_s": 5}, "exactly one of"),
    ({"every_s": 0}, "every_s"), ({"every_s": float("inf")}, "every_s"),
    ({"cron": "not a cron"}, "bad cron"), ({"cron": "0 0 30 2 *"}, "bad cron"),
    ({"every_s": 5, "tz": "Mars/Olympus"}, "time zone"),
    ({"every_s": 5, "misfire": "sometimes"}, "misfire"),
    ({"every_s": 5, "misfire_grace_s": -1}, "misfire_grace_s")])
def test_bad_schedules_fail_with_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Periodic("t", **kwargs)


def test_bad_periodic_fails_at_registration_and_registers_nothing() -> None:
    app = App("redis://unused")
    with pytest.raises(ValueError, match="bad cron"):
        app.periodic(cron="61 * * * *")
    with pytest.raises(TypeError):
        @app.periodic(every_s=5, args=(1, 2), name="p.one_arg")
        def one_arg(x: int) -> None: ...
    with pytest.raises(TypeError):  # JSON cannot carry it: refused before any tick
        @app.periodic(every_s=5, args=(object(),), name="p.obj")
        def obj(x: Any) -> None: ...
    assert app.periodic_jobs == {}


@pytest.mark.parametrize(("policy", "fire", "skip_to"), [
    ("once", [3300.0], None), ("skip", [], 3300.0), ("all", [60.0 * i for i in range(1, 56)], None)])
def test_misfire_after_downtime(policy: str, fire: list[float], skip_to: float | None) -> None:
    p = Periodic("t", every_s=60, misfire=policy, misfire_grace_s=30)
    plan = p.plan(0, 3345)  # every tick is older than the grace
    assert (plan.fire, plan.skip_to, plan.misfired) == (fire, skip_to, True)


def test_misfire_with_a_fresh_tick_runs_the_fresh_one() -> None:
    once = Periodic("t", every_s=60, misfire="once", misfire_grace_s=30)
    assert once.plan(0, 3310).fire == [3300]  # 60..3240 late, 3300 fresh: one run
    assert Periodic("t", every_s=60, misfire="skip", misfire_grace_s=30).plan(0, 3310).fire == [3300]


def test_catch_up_all_is_bounded_and_cheap() -> None:
    p = Periodic("t", every_s=1, misfire="all", misfire_grace_s=5)
    started = time.monotonic()
    plan = p.plan(0, 86_400.0 * 365)  # a year down: the newest MAX_CATCH_UP ticks only
    assert len(plan.fire) == MAX_CATCH_UP and plan.fire[-1] == 86_400.0 * 365
    assert time.monotonic() - started < 1


def test_within_grace_every_tick_fires() -> None:
    p = Periodic("t", every_s=1, misfire="once", misfire_grace_s=60)
    assert p.plan(100, 103.5).fire == [101, 102, 103]


# -- the scheduler -------------------------------------------------------------------------
def make_app(r: redis.Redis, **periodic: Any) -> App:
    app = App("redis://unused")
    app._client = r
    opts = {"every_s": 10, **periodic}

    @app.periodic(name="p.report", **opts)
    def report() -> None: ...

    return app


def pending_ids(r: redis.Redis, queue: str = "default") -> list[str]:
    import json

    return sorted(json.loads(m)["id"] for m in r.lrange(keys.pending(queue), 0, -1))


def test_two_schedulers_fire_each_tick_once(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    a, b = Scheduler(app, client=fake_redis), Scheduler(app, client=fake_redis)
    assert a.tick(1000.0) == [] and b.tick(1000.0) == []  # the first pass starts the schedule
    fired = a.tick(1031.0) + b.tick(1031.0)
    assert fired == ["periodic:p.report:1010", "periodic:p.report:1020", "periodic:p.report:1030"]
    assert b.leading is False and a.leading is True
    # The leader dies: its lease expires (here: deleted) and b takes over, losing nothing.
    fake_redis.delete(keys.SCHEDULER_LEADER)
    assert b.tick(1052.0) == ["periodic:p.report:1040", "periodic:p.report:1050"]
    assert a.tick(1052.0) == []
    assert len(pending_ids(fake_redis)) == 5


def test_even_two_leaders_cannot_double_a_tick(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    a, b = Scheduler(app, client=fake_redis), Scheduler(app, client=fake_redis)
    a.tick(1000.0)
    fake_redis.set(keys.SCHEDULER_LEADER, b.token)  # a handover while a still runs
    assert b.tick(1011.0) == ["periodic:p.report:1010"]
    fake_redis.set(keys.SCHEDULER_LEADER, a.token)  # a believes it leads again, stale
    assert a.tick(1011.0) == [] and a.tick(1005.0) == []  # the mark only moves forward
    assert pending_ids(fake_redis) == ["periodic:p.report:1010"]


@pytest.mark.parametrize(("policy", "first_pass"), [("once", 1), ("skip", 5),
                                                     ("all", MAX_CATCH_UP)])
def test_misfire_policy_over_passes_after_a_day_down(fake_redis: redis.Redis, policy: str,
                                                     first_pass: int) -> None:
    """Not a burst: after the policy's runs (skip: the 5 ticks within the grace), later
    passes fire only new ticks (the "once" policy used to fire once per pass until the
    scheduler had walked through the gap, 1,000 ticks per pass)."""
    app = make_app(fake_redis, every_s=1, misfire=policy, misfire_grace_s=5)
    s = Scheduler(app, client=fake_redis, lease_s=1)
    s.tick(1000.0)
    back = 1000.0 + 86_400
    assert len(s.tick(back + 0.5)) == first_pass
    assert [len(s.tick(back + 0.5 + i * 0.1)) for i in range(1, 5)] == [0] * 4
    assert s.tick(back + 1.0) == [f"periodic:p.report:{back + 1:.0f}"]


def test_a_handover_never_counts_as_a_misfire(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis, every_s=1, misfire="skip", misfire_grace_s=0)
    s = Scheduler(app, client=fake_redis, lease_s=10)
    s.tick(1000.0)
    assert len(s.tick(1015.5)) == 15  # < 2 leases: fired one by one despite grace 0 and skip


def test_unique_periodic_skips_a_tick_while_the_last_run_is_queued(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis, unique_by=lambda: "only")
    s = Scheduler(app, client=fake_redis)
    s.tick(1000.0)
    assert s.tick(1010.0) == ["periodic:p.report:1010"]
    assert s.tick(1020.0) == []  # 1010's job holds the unique key: 1020 is spent, not queued
    fake_redis.delete(keys.unique("default", "p.report:\"only\""))
    assert s.tick(1030.0) == ["periodic:p.report:1030"]


def test_fire_step_touches_one_cluster_slot(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis, queue="reports", unique_by=lambda: "u")
    s = Scheduler(app, client=fake_redis)
    calls: list[tuple[str, list[str]]] = []
    run = s.scripts.run
    s.scripts.run = lambda name, ks, argv: calls.append((name, ks)) or run(name, ks, argv)  # type: ignore[method-assign]
    s.tick(1000.0)
    s.tick(1010.0)
    fire = [ks for name, ks in calls if name == "fire_periodic"]
    assert len(fire) == 1 and len(fire[0]) == 5
    assert {key_slot(k.encode()) for k in fire[0]} == {key_slot(b"{reports}")}


def test_default_clock_is_redis(fake_redis: redis.Redis) -> None:
    s = Scheduler(make_app(fake_redis), client=fake_redis)
    s.tick()
    sec, usec = fake_redis.time()
    assert abs(float(fake_redis.get(keys.periodic_last("default", "p.report"))) -
               (sec + usec / 1e6)) < 5


def test_index_shows_next_and_last_run(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    s = Scheduler(app, client=fake_redis)
    s.tick(1000.0)
    (row,) = periodic_index(fake_redis)
    assert row["name"] == "p.report" and row["next_at"] == 1010 and row["last_at"] is None
    assert row["schedule"] == "every 10 s" and row["next_at_iso"] == "1970-01-01T00:16:50+00:00"
    s.tick(1011.0)
    (row,) = periodic_index(fake_redis)
    assert (row["next_at"], row["last_at"]) == (1020, 1010)
    # Another scheduler that takes over keeps showing the last run.
    fake_redis.delete(keys.SCHEDULER_LEADER)
    Scheduler(app, client=fake_redis).tick(1012.0)
    assert periodic_index(fake_redis)[0]["last_at"] == 1010
