"""Several ``redisq worker`` processes share one queue, as workers on several hosts do: every
job runs, and runs once, except the ones a SIGKILLed worker held, which the others recover
through its expired lease (and which may run again: at-least-once, only for those)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis

from redisq import App
from redisq.backend import keys
from redisq.backend.registry import Registry
from tests.support.procs import start_worker, stop
from tests.support.runs_app import read_runs
from tests.support.wait import wait_until

JOBS = 1_500
WORKERS = 3
LEASE_S = 1.0

pytestmark = pytest.mark.slow


def held_by(client: redis.Redis, worker_id: str) -> set[int]:
    """The job numbers in a worker's processing list (reserved, not settled)."""
    raw = client.lrange(keys.processing("default", worker_id), 0, -1)
    return {json.loads(body)["args"][0] for body in raw}


def test_workers_share_a_queue_and_recover_a_killed_one(redis_url: str, tmp_path: Path,
                                                        real_redis: redis.Redis) -> None:
    runs_file = tmp_path / "runs.log"
    app = App(redis_url)
    app.task(name="r.record")(lambda n, sleep_s=0.0: n)  # the worker's task, declared to enqueue
    jobs = app.enqueue_many("r.record", [((n,), {"sleep_s": 0.005}) for n in range(JOBS)])
    ids = [j.id for j in jobs]
    workers = [start_worker(redis_url, "--app", "tests.support.runs_app:app", "--worker-id",
                            f"w{i}", "--lease-s", str(LEASE_S), "--concurrency", "4",
                            RUNS_FILE=str(runs_file)) for i in range(WORKERS)]
    try:
        wait_until(lambda: len(read_runs(runs_file).count) > JOBS // 3 and held_by(real_redis, "w0"),
                   8, what="all workers running jobs")
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(5)
        killed = time.monotonic()
        held = held_by(real_redis, "w0")  # its lease is still running: nobody took them yet
        assert held, "the killed worker held jobs (it always does while a backlog waits)"
        wait_until(lambda: len(read_runs(runs_file).count) == JOBS, 8, what="every job to run")
        recovered_s = time.monotonic() - killed
        runs = read_runs(runs_file)
        twice = {n for n, c in runs.count.items() if c > 1}
        assert twice <= held, "only jobs the killed worker held may run twice"
        survivors = {w.pid for w in workers[1:]}
        assert all(runs.pids[n] & survivors for n in held), "the others ran its jobs"
        assert {w.pid for w in workers} >= set().union(*runs.pids.values())
        wait_until(lambda: all(app.records.status("default", i) == "succeeded" for i in ids), 3,
                   what="every job record to say succeeded")
        stats = app.queue("default").counts()
        assert stats["recovered"] >= len(held) and stats["succeeded"] >= JOBS
        # The dead worker's registry entry expires with its lease; the others stay listed.
        wait_until(lambda: sorted(w["id"] for w in Registry(real_redis).workers())
                   == ["w1", "w2"], 3, what="the registry to drop the killed worker")
        print(f"\n{WORKERS} workers, {JOBS} jobs: the killed one held {len(held)}, "
              f"{len(twice)} ran twice; all done {recovered_s:.2f} s after the kill")
    finally:
        for w in workers:
            stop(w)
        app.close()
