"""Finished records in done buckets on a real server (redisq/backend/finished.py): the bucket
settle.lua picks with the server's clock, expiry of whole buckets, reading across buckets, ids
used again, the other steps that look for a finished record, and the bytes a finished job
costs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from redisq import App
from redisq.backend import keys
from redisq.backend.embedded import RedisServer
from redisq.backend.finished import bucket_end_ms, bucket_width_ms
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Outcome
from tests.support.records import bucket_of, job_ids_in, record_ttl_s
from tests.support.wait import wait_until

Q = "default"


def finish(app: App, n: int = 1, status: str = "succeeded", ttl_s: float | None = None,
           worker: str = "w1", **outcome: Any) -> list[Envelope]:
    """Reserve and settle the next ``n`` messages of the queue (as a worker does, in one
    pipelined round trip); ``ttl_s``: this settle's record TTL (a per-call result TTL)."""
    consumer = Consumer(app.client, [Q], consumer_id=worker, mark_jobs=worker)
    msgs = consumer.reserve(n, 0)
    records = app.records
    saved, records.result_ttl_s = records.result_ttl_s, ttl_s or records.result_ttl_s
    try:
        envs = [Envelope.from_dict(json.loads(m.body)) for m in msgs]
        records.settle_many([records.settle_call(consumer.id, m, env,
                                                 Outcome(status, **outcome), worker,
                                                 app.serializer.dumps)
                             for m, env in zip(msgs, envs, strict=True)])
    finally:
        records.result_ttl_s = saved
    return envs


def server_ms(app: App) -> int:
    secs, micros = app.client.time()
    return int(secs) * 1000 + int(micros) // 1000


def test_settle_picks_the_bucket_of_the_records_expiry_with_the_servers_clock(app: App) -> None:
    job = app.enqueue("t.x")
    ttl_ms = 3_600_000
    before = server_ms(app)
    finish(app, ttl_s=ttl_ms / 1000, result_json="1")
    after = server_ms(app)
    bucket = bucket_of(app.client, Q, job.id)
    assert bucket is not None
    end = int(bucket.rsplit(":", 1)[1])
    assert bucket_end_ms(before, ttl_ms) <= end <= bucket_end_ms(after, ttl_ms)
    assert end % bucket_width_ms(ttl_ms) == 0
    assert app.client.zscore(keys.done(Q), str(end)) == end
    # The bucket expires at its end; the index no sooner than its last bucket.
    assert abs(app.client.pexpiretime(bucket) - end) <= 1
    assert app.client.pexpiretime(keys.done(Q)) >= end
    assert ttl_ms - 1000 <= record_ttl_s(app.client, Q, job.id) * 1000 <= ttl_ms + 225_000


def test_a_short_ttl_frees_the_records_whole_bucket_soon_after(app: App) -> None:
    jobs = app.enqueue_many("t.x", [((i,), {}) for i in range(20)])
    finish(app, 20, ttl_s=0.3, result_json="1")
    assert all(j.status == "succeeded" for j in jobs)
    assert not any(app.client.exists(keys.job(Q, j.id)) for j in jobs)
    # At least the TTL, at most one width (1 s for short TTLs) more.
    time.sleep(0.2)
    assert jobs[0].status == "succeeded"
    wait_until(lambda: all(j.status is None for j in jobs), 2.5, what="the records to expire")
    assert not app.client.keys(keys.done(Q) + ":*"), "the bucket expired whole"
    # A later settle prunes the index of buckets that ended.
    app.enqueue("t.x")
    finish(app, ttl_s=60, result_json="1")
    assert app.client.zcard(keys.done(Q)) == 1


def test_records_are_read_across_buckets_of_different_ttls(app: App) -> None:
    """Per-call result TTLs: each record goes to its own TTL's bucket, all are found."""
    jobs = app.enqueue_many("t.x", [((i,), {}) for i in range(3)])
    for i, ttl_s in enumerate((5.0, 600.0, 86_400.0)):
        finish(app, ttl_s=ttl_s, result_json=str(i))
    assert app.client.zcard(keys.done(Q)) == 3
    assert [j.result(1) for j in jobs] == [0, 1, 2]
    assert len({bucket_of(app.client, Q, j.id) for j in jobs}) == 3
    assert app.job(jobs[2].id).info()["status"] == "succeeded"  # found by id alone


def test_a_reused_id_starts_afresh_and_its_newest_outcome_is_read(app: App) -> None:
    first = app.enqueue("t.x", job_id="report-2026-12-03")
    finish(app, ttl_s=600, result_json='"old"')
    again = app.enqueue("t.x", job_id="report-2026-12-03")
    assert again.created and again.status == "queued", "a finished job's id starts afresh"
    assert app.client.llen(keys.pending(Q)) == 1
    time.sleep(0.002)
    (env,) = finish(app, ttl_s=60, result_json='"new"', worker="w2")
    assert env.id == first.id
    # The old record stays in its (later-ending) bucket until it expires; the newest wins.
    assert first.result(1) == "new" and first.info()["worker"] == "w2"


def test_redisq_job_shows_a_finished_record_from_its_bucket(redis_url: str, app: App) -> None:
    from click.testing import CliRunner

    from redisq.ops.cli import main

    job = app.enqueue("t.x", args=(1,), queue="cli")
    consumer = Consumer(app.client, ["cli"], consumer_id="w1", mark_jobs="w1")
    (m,) = consumer.reserve(1, 0)
    call = app.records.settle_call("w1", m, Envelope.from_dict(json.loads(m.body)),
                                   Outcome("succeeded", result_json="[1]"), "w1",
                                   app.serializer.dumps)
    app.records.settle_many([call])
    assert not app.client.exists(keys.job("cli", job.id))
    shown = CliRunner().invoke(main, ["job", job.id], env={"REDIS_URL": redis_url},
                               catch_exceptions=False)
    record = json.loads(shown.stdout)
    assert shown.exit_code == 0 and record["status"] == "succeeded"
    # (`redisq job` shows the result as JSON, and the arguments the bucket kept: a summary)
    assert (record["queue"], record["result"], record["args"]) == ("cli", [1], "[1]")


def test_task_and_worker_names_are_kept_once_per_bucket(app: App) -> None:
    """Each record holds short codes; the bucket maps them to the names (settle.lua), and a
    read puts the names back (record.lua)."""
    long_task = "myproject.tasks.emails.send_a_rather_long_welcome_email"
    jobs = [app.enqueue(long_task if i % 2 else "t.x", args=(i,)) for i in range(6)]
    workers = ["worker-7d9f8b6c5-x2k4z-1234-ab12", "w2"]
    for i in range(6):
        finish(app, worker=workers[i % 2], result_json=str(i))
    (end,) = app.client.zrange(keys.done(Q), 0, -1)
    bucket = keys.done_bucket(Q, int(end))
    assert job_ids_in(app.client, bucket) == sorted(j.id for j in jobs)
    names = {f: v for f, v in app.client.hgetall(bucket).items() if f.startswith(b"\x01#")}
    assert sorted(names.values()) == sorted(n.encode() for n in [long_task, "t.x", *workers])
    assert all(long_task.encode() not in app.client.hget(bucket, j.id) for j in jobs)
    for i, job in enumerate(jobs):
        info = job.info()
        assert (info["task"], info["worker"], job.result(1)) == (
            long_task if i % 2 else "t.x", workers[i % 2], i)


def test_another_workers_outcome_in_a_bucket_is_kept_when_both_have_codes_there(
        app: App) -> None:
    from redisq.backend.records import SETTLE_DUPLICATE

    app.enqueue("t.x")
    finish(app, worker="wb", result_json="0")  # wb has a code in the bucket too
    job = app.enqueue("t.x")
    wb = Consumer(app.client, [Q], consumer_id="wb", mark_jobs="wb")
    (mine,) = wb.reserve(1, 0)
    app.client.rpush(keys.pending(Q), mine.body)  # delivered twice
    finish(app, worker="wa", result_json='"wa"')
    call = app.records.settle_call("wb", mine, Envelope.from_dict(json.loads(mine.body)),
                                   Outcome("succeeded", result_json='"wb"'), "wb",
                                   app.serializer.dumps)
    assert app.records.settle_many([call]) == [SETTLE_DUPLICATE]
    assert job.result(1) == "wa" and job.info()["worker"] == "wa"


def test_a_unique_key_held_by_a_job_whose_record_moved_is_free_again(app: App) -> None:
    @app.task(name="t.u", unique_by="key")
    def u(key: str) -> None:
        return None

    first = u.delay("k")
    assert not u.delay("k").created
    finish(app, result_json="null")
    assert bucket_of(app.client, Q, first.id)
    second = u.delay("k")
    assert second.created and second.id != first.id


def test_cancel_and_requeue_dead_keep_working(app: App) -> None:
    waiting = app.enqueue("t.x", delay_s=60)
    assert waiting.cancel() and waiting.status == "cancelled"
    dead = app.enqueue("t.x")
    finish(app, status="dead", error_type="E", error_message="boom")
    assert dead.status == "dead" and app.client.exists(keys.job(Q, dead.id))
    assert app.requeue_dead(Q) == 1 and dead.status == "queued"
    finish(app, result_json="5")
    assert dead.result(1) == 5 and not app.client.exists(keys.job(Q, dead.id))


def test_a_periodic_tick_whose_job_finished_is_not_fired_again(app: App) -> None:
    """fire_periodic's second guard (the record of the tick's job) looks in the buckets
    (the scheduler passes the done index: redisq/worker/scheduler.py)."""
    jid = "periodic:nightly:1764720000"
    app.enqueue("t.x", job_id=jid)
    finish(app, result_json="1")
    mark = keys.periodic_last(Q, "nightly")
    app.client.set(mark, "0")  # the mark was lost: only the record refuses the tick
    ks = [mark, keys.pending(Q), keys.job(Q, jid), keys.stats(Q)]
    argv = ["1764720000.000", b'{"id":"x"}', "t.x", Q, f"{time.time():.6f}", 1, jid,
            keys.job_prefix(Q), keys.done(Q)]
    assert app.records.scripts.run("fire_periodic", ks, argv) == 0
    assert app.client.llen(keys.pending(Q)) == 0


def test_a_finished_job_costs_at_most_200_bytes(tmp_path: Any) -> None:
    """Issue 18's target, on a private server: used_memory (INFO memory) around 5,000 no-op
    jobs finished the worker's way, the result aside (null). bench/memory.py measures 50,000
    with a real worker process."""
    server = RedisServer(str(tmp_path), appendfsync="everysec").start()
    try:
        app = App(server.url)
        # The job indexes (issue 16) are bounded per queue, not per job (index_max ids, ~75
        # bytes each, whatever runs): measured apart, by tests/unit/test_job_index_caps.py.
        app.index_max = 0
        n = 5000
        app.enqueue("bench.noop")
        finish(app, result_json="null", worker="bench-host-12345-ab12")  # one-time keys
        before = int(app.client.info("memory")["used_memory"])
        for _ in range(n // 500):
            app.enqueue_many("bench.noop", [((), {})] * 500)
            finish(app, 500, result_json="null", worker="bench-host-12345-ab12")
        assert app.client.llen(keys.pending(Q)) == 0
        per_job = (int(app.client.info("memory")["used_memory"]) - before) / n
        print(f"{per_job:.1f} bytes per finished job")
        assert per_job <= 200, f"{per_job:.1f} bytes per finished job"
        app.close()
    finally:
        server.stop()


@pytest.mark.parametrize("status", ["succeeded", "cancelled"])
def test_the_record_read_after_the_move_is_the_one_written(app: App, status: str) -> None:
    job = app.enqueue("t.x", args=("a", 2), kwargs={"k": 1})
    app.records.report_progress(Q, job.id, 0.0, "not started: not kept")
    consumer = Consumer(app.client, [Q], consumer_id="w1", mark_jobs="w1")
    (m,) = consumer.reserve(1, 0)
    app.records.report_progress(Q, job.id, 0.5, "half")
    env = Envelope.from_dict(json.loads(m.body))
    call = app.records.settle_call("w1", m, env,
                                   Outcome(status, result_json='{"ok":true}', duration_s=0.25),
                                   "w1", app.serializer.dumps)
    assert app.records.settle_many([call]) == [1]
    info = job.info()
    assert {k: info[k] for k in ("status", "task", "attempts", "worker", "args", "queue",
                                 "progress_message")} == {
        "status": status, "task": "t.x", "attempts": "1", "worker": "w1",
        "args": '["a",2] {"k":1}', "queue": Q, "progress_message": "half"}
    started, finished_at = float(info["started_at"]), float(info["finished_at"])
    assert abs(finished_at - started - 0.25) < 0.002
    assert info["enqueued_at"] == f"{env.enqueued_at:.3f}"
    assert ("result" in info) == (status == "succeeded")
