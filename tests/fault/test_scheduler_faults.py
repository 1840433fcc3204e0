"""SIGKILL the leader of two scheduler processes: every tick of an every_s=1 job fires exactly
once — none doubled during the handover, none lost in the gap."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import redis

from redisq import keys
from redisq.registry import Registry
from tests.support.procs import ROOT, cli_env, stop
from tests.support.wait import wait_until


def start_scheduler(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "redisq", "scheduler", "--app", "tests.sched_app:app", "--url",
         url, "--lease-s", "1.5", "--log-level", "WARNING"],
        cwd=ROOT, env=cli_env(url, REDISQ_BLOCK_TIMEOUT_S="0.5"), stderr=subprocess.DEVNULL)


def fired_ticks(r: redis.Redis) -> list[int]:
    prefix = b"periodic:s.tick:"
    ids = [m for m in r.lrange(keys.pending("default"), 0, -1)]
    return sorted(int(m.split(prefix)[1].split(b'"')[0]) for m in ids)


def test_leader_killed_no_tick_lost_or_doubled(real_redis: redis.Redis, redis_url: str) -> None:
    procs = [start_scheduler(redis_url), start_scheduler(redis_url)]
    registry = Registry(real_redis)
    try:
        wait_until(lambda: len(fired_ticks(real_redis)) >= 2, 6, what="ticks firing")
        leader = wait_until(lambda: next((w for w in registry.workers() if w.get("leading")),
                                         None), 3, what="the leader in the registry")
        victim = next(p for p in procs if p.pid == leader["pid"])
        victim.send_signal(signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: max(fired_ticks(real_redis)) >= killed_at + 2, 6,
                   what="ticks after the takeover")
    finally:
        for p in procs:
            stop(p)
    ticks = fired_ticks(real_redis)
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"a tick was lost: {ticks}"
