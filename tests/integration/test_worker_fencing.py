"""An in-process worker whose job was marked started, then held up (frozen) past the lease
before its thread could run it: by then the job was recovered and taken by another consumer,
so it must not start here; the worker registers again and carries on."""

from __future__ import annotations

from typing import Any

from redisq import App
from redisq.backend import control, keys
from redisq.broker.consumer import Consumer
from redisq.model import Outcome
from tests.support.inproc import running
from tests.support.wait import wait_until


def test_a_job_held_up_past_the_lease_before_it_runs_does_not_start(app: App) -> None:
    ran: list[int] = []

    @app.task(name="t.fenced")
    def fenced(n: int) -> int:
        ran.append(n)
        return n

    other = Consumer(app.client, ["default"], consumer_id="other", lease_s=1.5,
                     mark_jobs="other")
    taken: list[Any] = []

    def held_up(worker: Any) -> None:
        run = worker._run

        def frozen_then_run(job: Any) -> None:
            worker._run = run  # once
            # The worker stops here, the job taken and marked started, for longer than its
            # lease (so its last renewal is old); another consumer recovers the job and
            # takes it.
            worker.consumer._confirmed["default"] = (float("-inf"), float("-inf"))
            # (Its other threads are frozen too: they take nothing meanwhile.)
            control.pause(app.client, "default")
            worker.paused = {"default"}
            app.client.delete(keys.lease("default", worker.id))
            assert other.requeue_stale() == 1
            taken.extend(other.reserve(1, timeout_s=0))
            control.resume(app.client, "default")
            run(job)

        worker._run = frozen_then_run

    with running(app, before_start=held_up) as worker:
        first_epoch = worker.consumer.token("default")
        job = fenced.delay(1)
        wait_until(lambda: taken and worker.consumer.token("default") != first_epoch
                   and worker._running == 0, 5, what="the worker to give the job up")
        assert ran == [], "the recovered job did not start on the frozen worker"
        (m,) = taken
        assert job.status == "started" and job.info()["worker"] == "other"
        call = app.records.settle_call("other", m, worker._decode(m).env,  # type: ignore[union-attr]
                                       Outcome("succeeded", result_json="1"), "other",
                                       app.serializer.dumps)
        assert app.records.settle_many([call]) == [1]
        assert fenced.delay(2).result(5) == 2, "the worker carries on under its new epoch"
        assert ran == [2]
    assert job.status == "succeeded" and job.info()["worker"] == "other"


def test_a_duplicate_delivered_after_the_record_moved_to_a_bucket_is_not_run_again(
        app: App) -> None:
    """A job succeeded and its record went to a done bucket (no key any more); a copy of its
    message arrives again (a frozen worker's recovery, an at-least-once producer): the worker
    reports it already succeeded and does not run it, whether it was taken alone by a
    blocking move or in a batch."""
    ran: list[int] = []

    @app.task(name="t.once")
    def once(n: int) -> int:
        ran.append(n)
        return n

    job = once.delay(1)
    (body,) = app.client.lrange(keys.pending("default"), 0, -1)
    with running(app) as worker:
        assert job.result(5) == 1
        assert not app.client.exists(keys.job("default", job.id)), "moved to a done bucket"
        app.client.lpush(keys.pending("default"), body)  # alone: a blocking move takes it
        wait_until(lambda: worker.consumer.held() == 0 and not app.client.llen(
            keys.pending("default")), 5, what="the duplicate to be settled")
        app.client.lpush(keys.pending("default"), *([body] * 3))  # in a batch, with others
        later = once.delay(2)
        assert later.result(5) == 2
        wait_until(lambda: worker.consumer.held() == 0, 5, what="the duplicates to be settled")
    assert ran == [1, 2], "the finished job did not run again"
    assert job.info()["status"] == "succeeded" and job.result(1) == 1
    assert not app.client.exists(keys.job("default", job.id)), "no record key made again"
