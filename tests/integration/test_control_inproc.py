"""Job control with a worker in the test process (ctl): an aborted job never runs again, a
throttled start shows in the snapshot and `redisq info`, and a paused queue's jobs stay."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from redisq import App, config
from redisq.backend import keys
from redisq.ops.stats import format_snapshot, snapshot
from tests.support.inproc import Worker, running
from tests.support.wait import wait_until


@pytest.fixture
def capp(redis_url: str) -> Iterator[App]:
    application = App(redis_url)

    @application.task(name="i.count")
    def count() -> None:
        application.client.incr("count")

    @application.task(name="i.slow", rate_limit="2/s", retries=0)
    def slow(i: int) -> None:
        application.client.rpush("slow", i)

    @application.task(name="i.nap", timeout_s=None)
    def nap(seconds: float) -> None:
        application.client.set("nap:started", "1")
        time.sleep(seconds)
        application.client.set("nap:woke", "1")

    yield application
    application.close()


def test_a_duplicate_of_an_aborted_job_is_not_run(capp: App) -> None:
    job = capp.enqueue("i.count")
    # As if the job had been aborted while a second copy of its message stayed queued (a
    # duplicate delivery after a lease loss): that copy must not run it again.
    capp.client.hset(keys.job("default", job.id), "status", "aborted")
    with running(capp):
        wait_until(lambda: capp.queue("default").depth() == 0
                   and capp.queue("default").counts()["in_flight"] == 0, 5)
    assert capp.client.get("count") is None
    assert job.status == "aborted"


def test_throttled_starts_show_in_the_snapshot_and_info(capp: App) -> None:
    jobs = capp.tasks["i.slow"].map(range(3))
    with running(capp):
        wait_until(lambda: capp.client.llen("slow") >= 1, 5)
        wait_until(lambda: any(j.status == "throttled" for j in jobs), 5)
        snap = snapshot(capp.client)
        assert snap["queues"]["default"]["throttled"] >= 1
        assert "throttled starts: default=" in format_snapshot(snap, False)
        wait_until(lambda: capp.client.llen("slow") == 3, 5)  # 2/s: all within ~1 s
    assert [j.status for j in jobs] == ["succeeded"] * 3


def test_paused_queue_is_left_alone_and_resumes(capp: App) -> None:
    capp.pause("default")
    jobs = [capp.enqueue("i.count") for _ in range(3)]
    with running(capp) as worker:
        wait_until(lambda: worker.paused == {"default"}, 3)
        assert capp.queue("default").depth() == 3
        assert capp.resume("default") and not capp.resume("default")
        wait_until(lambda: all(j.status == "succeeded" for j in jobs), 5)
    assert capp.client.get("count") == b"3"


def test_an_abandoned_thread_that_wakes_later_records_nothing_more(capp: App) -> None:
    """A job stuck in time.sleep is recorded aborted and its slot freed after the grace; when
    the sleep returns, the async exception ends it before the task's next line, and nothing
    is recorded or counted twice."""
    job = capp.enqueue("i.nap", [1.5])
    with running(capp, concurrency=1, lease_s=0.9, abort_grace_s=0.2) as worker:
        wait_until(lambda: capp.client.exists("nap:started"), 5)
        assert job.abort() == "aborting"
        wait_until(lambda: job.status == "aborted", 2)
        after = capp.enqueue("i.count")  # the one slot is free again: a new thread runs it
        wait_until(lambda: after.status == "succeeded", 3)
        wait_until(lambda: worker.pool._retired == set(), 3)  # the stuck thread woke, ended
        assert worker._running == 0
    assert not capp.client.exists("nap:woke")
    assert job.status == "aborted"
    assert capp.queue("default").counts().get("aborted") == 1


def test_abort_is_seen_within_a_second_whatever_the_heartbeat(capp: App) -> None:
    """lease_s=30: heartbeats every 10 s; running jobs' abort flags are read every second."""
    job = capp.enqueue("i.nap", [30])
    with running(capp, concurrency=1, lease_s=30, abort_grace_s=0.2):
        wait_until(lambda: capp.client.exists("nap:started"), 5)
        t0 = time.monotonic()
        assert job.abort() == "aborting"
        wait_until(lambda: job.status == "aborted", 3)
        assert time.monotonic() - t0 < 1.0 + 0.2 + 1.0  # poll + grace + force and abandon


def test_a_burst_worker_waits_for_the_jobs_it_throttled(capp: App) -> None:
    """--burst: rate-limited jobs waiting in the delayed set for their slot are this burst's
    work (first attempts delayed by a producer are not)."""
    jobs = capp.tasks["i.slow"].map(range(3))  # 2/s: the last starts ~1 s after the first
    settings = config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 2}, {})
    assert Worker(capp, settings).run() == 0
    assert [j.status for j in jobs] == ["succeeded"] * 3
