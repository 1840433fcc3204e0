"""SIGKILL the leader of two scheduler processes (real subprocesses, ``python -m redisq
scheduler``, lease 1.5 s): every tick of an every_s=1 job fires exactly once — none doubled
during the handover, none lost in the gap. A worker runs the jobs; the task records its tick."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from redisq import App, current_job
from redisq.backend.registry import Registry
from tests.support.inproc import running
from tests.support.procs import ROOT, cli_env, stop
from tests.support.wait import wait_until

RAN = "test:sched:ran"  # the ticks the task ran for, one entry per run


def start_scheduler(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "redisq", "scheduler", "--app", "tests.sched_app:app", "--url",
         url, "--lease-s", "1.5", "--log-level", "WARNING"],
        cwd=ROOT, env=cli_env(url, REDISQ_BLOCK_TIMEOUT_S="0.5"), stderr=subprocess.DEVNULL)


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    """The worker side of tests.sched_app: the same task name, recording the tick it ran for."""
    application = App(redis_url)

    @application.task(name="s.tick")
    def tick() -> None:
        application.client.rpush(RAN, current_job().id.rsplit(":", 1)[1])

    yield application
    application.close()


def ran(r: redis.Redis) -> list[int]:
    return [int(float(t)) for t in r.lrange(RAN, 0, -1)]


def test_leader_killed_no_tick_lost_or_doubled(app: App, real_redis: redis.Redis,
                                               redis_url: str) -> None:
    procs = [start_scheduler(redis_url), start_scheduler(redis_url)]
    registry = Registry(real_redis)
    try:
        with running(app):
            wait_until(lambda: len(ran(real_redis)) >= 2, 6, what="ticks running")
            leader = wait_until(lambda: next((w for w in registry.workers()
                                              if w.get("leading")), None), 3, what="the leader")
            victim = next(p for p in procs if p.pid == leader["pid"])
            victim.send_signal(signal.SIGKILL)
            killed_at = time.time()
            # Every tick after the kill is the survivor's: those in the gap (the lease, 1.5 s,
            # runs out) are fired late, one by one, when it takes over.
            wait_until(lambda: max(ran(real_redis)) >= killed_at + 1.5, 6,
                       what="ticks run after the takeover")
            survivor = next(p for p in procs if p is not victim)
            wait_until(lambda: any(w.get("leading") and w["pid"] == survivor.pid
                                   for w in registry.workers()), 2, what="the survivor leads")
    finally:
        for p in procs:
            stop(p)
    ticks = sorted(ran(real_redis))
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"a tick was lost: {ticks}"
    assert ticks[0] <= killed_at - 1 and ticks[-1] >= killed_at + 1.5  # both sides of the kill
