"""The scheduler against a real server: one lease for two schedulers, each tick fired exactly
once, takeover after the lease runs out (Redis's TTL, waited on with a deadline) with the
schedule driven by injected clocks, delayed-job promotion, and what `redisq info` shows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from redisq import App
from redisq.backend import keys
from redisq.ops.cli import main
from redisq.ops.stats import snapshot
from redisq.worker.scheduler import Scheduler, SchedulerDaemon
from tests.support.inproc import running
from tests.support.wait import wait_until


class Clock:
    """An injected clock: the schedule's time moves only when the test says so."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    application = App(redis_url)

    @application.periodic(every_s=1, name="p.beat", misfire_grace_s=60)
    def beat() -> None: ...

    yield application
    application.close()


def fired(r: redis.Redis, queue: str = "default") -> list[float]:
    """The ticks whose jobs are in the queue, from the job ids (periodic:<name>:<tick>)."""
    ids = [json.loads(m)["id"] for m in r.lrange(keys.pending(queue), 0, -1)]
    return sorted(float(i.rsplit(":", 1)[1]) for i in ids)


def test_one_lease_each_tick_once(app: App, real_redis: redis.Redis) -> None:
    clock = Clock(10_000.0)
    a, b = Scheduler(app, lease_s=5, clock=clock), Scheduler(app, lease_s=5, clock=clock)
    a.tick(), b.tick()  # the first pass starts the schedule at 10000
    for _ in range(40):  # both run every pass, as two processes would
        clock.t += 0.37
        a.tick(), b.tick()
    assert a.leading and not b.leading
    assert 0 < real_redis.pttl(keys.SCHEDULER_LEADER) <= 5000
    assert real_redis.get(keys.SCHEDULER_LEADER).decode() == a.token
    assert fired(real_redis) == [10_001.0 + i for i in range(14)]  # 10000 < t <= 10014.8
    record = app.job("periodic:p.beat:10001")
    assert record is not None and record.status == "queued"


def test_takeover_after_the_lease_runs_out_loses_and_doubles_nothing(
        app: App, real_redis: redis.Redis) -> None:
    clock = Clock(20_000.0)
    a, b = Scheduler(app, lease_s=0.3, clock=clock), Scheduler(app, lease_s=0.3, clock=clock)
    a.tick()
    clock.t += 3.5
    assert len(a.tick()) == 3 and b.tick() == []
    # a dies here. While its lease runs out on Redis's clock, the schedule's clock moves on.
    clock.t += 4.0
    taken = wait_until(lambda: b.tick(), 5, what="b takes the lease and fires")
    assert taken == [f"periodic:p.beat:{t}" for t in range(20_004, 20_008)]
    assert b.leading
    assert a.tick() == [] and not a.leading  # a revived: the lease is b's now
    assert fired(real_redis) == [20_001.0 + i for i in range(7)]


def test_a_paused_leader_that_wakes_up_cannot_double_a_tick(app: App,
                                                            real_redis: redis.Redis) -> None:
    clock = Clock(30_000.0)
    a, b = Scheduler(app, lease_s=0.2, clock=clock), Scheduler(app, lease_s=0.2, clock=clock)
    a.tick()
    clock.t += 2.5
    wait_until(lambda: b.tick(), 5, what="b takes over the expired lease")
    # a was paused in the middle of a pass, after its lease check: it fires with its stale view.
    spec = app.periodic_jobs["p.beat"]
    assert a._fire_due("p.beat", spec, clock.t) == []
    assert a._fire_due("p.beat", spec, clock.t + 1) == ["periodic:p.beat:30003"]  # a new tick
    assert b.tick() == []
    assert fired(real_redis) == [30_001.0, 30_002.0, 30_003.0]


def test_resign_hands_the_lease_over_at_once(app: App) -> None:
    a, b = Scheduler(app, lease_s=30), Scheduler(app, lease_s=30)
    a.tick()
    assert a.leading and (b.tick(), b.leading) == ([], False)
    a.resign()
    b.tick()
    assert b.leading


def test_scheduler_promotes_due_delayed_jobs_and_info_shows_them(app: App, redis_url: str,
                                                                 real_redis: redis.Redis) -> None:
    app.enqueue("t.later", queue="later", delay_s=0.05)
    wait_until(lambda: snapshot(real_redis)["queues"]["later"]["delayed_due"] == 1, 3,
               what="the delayed job to be due")
    runner = CliRunner()
    text = runner.invoke(main, ["info"], env={"REDIS_URL": redis_url}).stdout
    assert "delayed jobs due: later=1" in text
    s = Scheduler(app, lease_s=5)
    s.tick()
    counts = snapshot(real_redis)["queues"]["later"]
    assert (counts["depth"], counts["delayed"], counts["delayed_due"]) == (1, 0, 0)
    (row,) = snapshot(real_redis)["periodic"]
    assert row["name"] == "p.beat" and row["schedule"] == "every 1 s"
    text = runner.invoke(main, ["info"], env={"REDIS_URL": redis_url}).stdout
    assert f"next {row['next_at_iso']} last -" in text and "p.beat" in text
    assert "default" in text  # the periodic's queue is listed before its first job


def test_scheduler_daemon_leads_fires_and_resigns(app: App, real_redis: redis.Redis) -> None:
    with running(app, SchedulerDaemon) as daemon:
        wait_until(lambda: len(fired(real_redis)) >= 2, 5, what="two ticks fired")
        assert daemon.scheduler.leading
    assert real_redis.get(keys.SCHEDULER_LEADER) is None  # given up on stop
    ticks = fired(real_redis)
    assert ticks == [ticks[0] + i for i in range(len(ticks))]


def test_worker_with_scheduler_gives_the_lease_up_on_stop(app: App,
                                                          real_redis: redis.Redis) -> None:
    with running(app, with_scheduler=True) as worker:
        wait_until(lambda: worker.scheduler.leading, 3, what="the worker's scheduler leads")
    assert real_redis.get(keys.SCHEDULER_LEADER) is None


def test_scheduler_command_needs_periodic_jobs(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["scheduler", "--app", "tests.worker_app:app"],
                                env={"REDIS_URL": redis_url})
    assert result.exit_code == 2 and "no @app.periodic jobs" in result.stderr
