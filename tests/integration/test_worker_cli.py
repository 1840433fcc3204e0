"""The worker daemon through the real CLI, as separate processes against a real server."""

from __future__ import annotations

import itertools
import json
import re
import signal
import time

import redis

from redisq import JobFailed
from redisq.backend import keys
from redisq.backend.embedded import RedisServer
from redisq.backend.registry import Registry
from tests import worker_app
from tests.support.procs import run_cli, start_worker, stop
from tests.support.records import record_ttl_s
from tests.support.wait import wait_until


def use(url: str) -> redis.Redis:
    worker_app.app.use_url(url)
    worker_app.app.close()
    return worker_app.app.client


def test_thousand_jobs_two_workers_each_once(redis_url: str) -> None:
    r = use(redis_url)
    jobs = worker_app.record.map(range(1000))
    workers = [start_worker(redis_url), start_worker(redis_url)]
    try:
        wait_until(lambda: r.hlen("runs") == 1000, 8, what="1,000 jobs")
        assert set(r.hvals("runs")) == {b"1"}  # each ran exactly once
        assert [j.result(1) for j in jobs[:5]] == [0, 2, 4, 6, 8]
        # The App's result TTL (1 h), up to one done bucket's width (1/16 of it) longer.
        assert r.exists(keys.job("default", jobs[0].id)) == 0
        assert 3000 < record_ttl_s(r, "default", jobs[0].id) <= 3600 * 17 / 16
        registry = Registry(r)
        # The registry is refreshed every lease_s / 3: both workers report their share.
        wait_until(lambda: sum(w["processed"] for w in registry.workers()) == 1000, 3,
                   what="the registry's counts")
        assert len(registry.workers()) == 2
    finally:
        for w in workers:
            stop(w)


def test_sigkill_with_eight_in_flight(redis_url: str) -> None:
    r = use(redis_url)
    jobs = [worker_app.block.delay(i) for i in range(8)]
    doomed = start_worker(redis_url, "--concurrency", "8", "--lease-s", "1")
    try:
        wait_until(lambda: r.hlen("starts") == 8, 5, what="8 jobs in flight")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
        r.set("release", 1)
        survivor = start_worker(redis_url, "--concurrency", "8", "--lease-s", "1")
        try:
            assert [j.result(8) for j in jobs] == list(range(8))
            assert all(int(v) == 2 for v in r.hvals("starts"))  # ran again after the kill
            assert all(int(v) == 1 for v in r.hvals("runs"))
        finally:
            stop(survivor)
    finally:
        stop(doomed)


def test_sigterm_lets_running_jobs_finish(redis_url: str) -> None:
    r = use(redis_url)
    job = worker_app.sleep.delay(1.0)
    worker = start_worker(redis_url)
    try:
        wait_until(lambda: job.status == "started", 5, what="the job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(8) == 0
        assert job.status == "succeeded" and r.get("slept") == b"1"
    finally:
        stop(worker)


def test_sigterm_loses_no_job_line(redis_url: str) -> None:
    """Every finished job's INFO line is written at a SIGTERM stop (lines wait up to 50 ms
    to be written in batches: the clean exit writes what waits)."""
    r = use(redis_url)
    jobs = worker_app.record.map(range(100))
    worker = start_worker(redis_url, "--log-level", "INFO")
    try:
        wait_until(lambda: r.hlen("runs") == 100, 8, what="100 jobs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(8) == 0
        assert worker.stderr is not None
        log = worker.stderr.read().decode()
        done = re.findall(r"level=INFO logger=redisq.worker job=(\w+) task=t\.record "
                          r"queue=default succeeded duration_s=\d+\.\d{6}\n", log)
        assert sorted(done) == sorted(j.id for j in jobs)
    finally:
        stop(worker)


def test_second_signal_forces_and_requeues(redis_url: str) -> None:
    r = use(redis_url)
    job = worker_app.block.delay(1)
    worker = start_worker(redis_url)
    try:
        wait_until(lambda: r.hlen("starts") == 1, 5, what="the job to start")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(5) == 1
        assert r.llen(keys.pending("default")) == 1  # given back, not lost
        assert job.status == "started"
    finally:
        stop(worker)


def test_poison_job_dies_with_its_traceback(redis_url: str) -> None:
    use(redis_url)
    job = worker_app.poison.delay()
    worker = start_worker(redis_url, REDISQ_FAILURE_TTL_S="120")
    try:
        try:
            job.result(6)
            raise AssertionError("expected JobFailed")
        except JobFailed as exc:
            assert exc.error_type == "ValueError" and exc.message == "poisoned input"
            assert "Traceback" in exc.traceback and "poisoned input" in exc.traceback
        info = job.info()
        assert info["status"] == "dead" and info["attempts"] == "3"
        assert 100 < record_ttl_s(worker_app.app.client, "default", job.id) <= 120  # its key
        dead = [json.loads(e) for e in worker_app.app.queue("default").dead_letters()]
        assert dead[0]["job_id"] == job.id and dead[0]["reason"] == "poisoned input"
    finally:
        stop(worker)


def test_failing_task_retried_with_backoff(redis_url: str) -> None:
    r = use(redis_url)
    job = worker_app.flaky.delay("attempts")
    later = worker_app.later.delay("later-count")
    worker = start_worker(redis_url)
    try:
        assert job.result(6) == "ok"
        stamps = [float(t) for t in r.lrange("attempts", 0, -1)]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert len(stamps) == 3 and gaps[0] >= 0.05 and gaps[1] >= 0.1  # exponential
        assert job.info()["attempts"] == "3"
        assert later.result(6) == "ok"  # Retry(delay_s=...) honoured
    finally:
        stop(worker)


def test_unknown_task_and_malformed_json_are_dead_lettered(redis_url: str) -> None:
    r = use(redis_url)
    unknown = worker_app.app.enqueue("no.such.task", args=(1,))
    r.lpush(keys.pending("default"), b"garbage")
    r.lpush(keys.pending("default"), b"{not json")
    r.lpush(keys.pending("default"), b'{"id": 5}')
    worker = start_worker(redis_url)
    try:
        good = worker_app.record.delay(7)
        assert good.result(6) == 14  # the worker kept going
        dead = [json.loads(e) for e in worker_app.app.queue("default").dead_letters()]
        reasons = {d["error_type"]: d["reason"] for d in dead}
        assert "unknown task 'no.such.task'" in reasons["UnknownTask"]
        assert reasons["BadMessage"].startswith("malformed message")
        assert len(dead) == 4 and unknown.status == "dead"
        assert b"garbage" in [d["message"].encode() for d in dead]  # kept for inspection
    finally:
        stop(worker)


def test_pubsub_worker_survives_client_kill(redis_url: str) -> None:
    r = use(redis_url)
    worker = start_worker(redis_url, "--mode", "pubsub", "--channels", "events")

    def delivered(kind: str) -> bool:
        worker_app.app.publish("events", {"kind": kind})
        return r.hget("events", kind) is not None

    try:
        wait_until(lambda: delivered("before"), 5, interval_s=0.1, what="subscribed")
        r.client_kill_filter(_type="pubsub")
        wait_until(lambda: delivered("after"), 5, interval_s=0.1, what="re-subscribed")
    finally:
        stop(worker)


def test_worker_settings_errors_exit_2(redis_url: str) -> None:
    """Bad configuration stops the worker at once with exit 2 (the other commands' codes are
    checked in-process in test_cli_commands.py)."""
    app = ("--app", "tests.worker_app:app")
    misspelt = run_cli(redis_url, "worker", *app, REDISQ_CONCURENCY="4")
    assert misspelt.returncode == 2 and "REDISQ_CONCURENCY" in misspelt.stderr
    assert run_cli(redis_url, "worker", *app, "--concurrency", "0").returncode == 2
    assert run_cli(redis_url, "worker").returncode == 2  # no --app


def test_worker_app_errors_exit_2(redis_url: str) -> None:
    assert run_cli(redis_url, "worker", "--app", "tests.nothing_here:app").returncode == 2
    unknown = run_cli(redis_url, "worker", "--app", "tests.worker_app:app", "--mode", "pubsub",
                      "--channels", "nobody")
    assert unknown.returncode == 2 and "nobody" in unknown.stderr


def test_cli_round_trip_and_redis_down(redis_url: str, server: RedisServer) -> None:
    ok = run_cli(redis_url, "enqueue", "t.record", "--args", "[3]", "--queue", "cli")
    assert ok.returncode == 0 and len(ok.stdout.strip()) == 32
    shown = run_cli(redis_url, "job", ok.stdout.strip())
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "queued"
    server.stop()
    down = run_cli(server.url, "info")
    assert down.returncode == 1 and down.stderr.startswith("error:")


def test_burst_waits_for_pending_retries(redis_url: str) -> None:
    """`redisq worker --burst` exits only once no retry is pending: the first attempt asks for
    a retry in 0.3 s (Retry(delay_s)), another is delayed by the backoff, and the worker must
    stay for both (it used to exit with them in the delayed set). A job the producer delayed
    is not waited for."""
    r = use(redis_url)
    later = worker_app.later.delay("later-count")
    flaky = worker_app.flaky.delay("attempts")
    scheduled = worker_app.record.enqueue(args=(1,), delay_s=3600)
    worker = start_worker(redis_url, "--burst")
    try:
        assert worker.wait(8) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        stop(worker)
    assert later.status == "succeeded" and later.info()["attempts"] == "2"
    assert flaky.status == "succeeded" and r.llen("attempts") == 3
    assert scheduled.status == "queued"
