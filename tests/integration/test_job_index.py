"""Issue 16: the bounded status indexes and per-second series written by settle.lua, search
over them, the job page's data, and the operator actions (retry now, cancel, delete), against
a real server with an in-process worker."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from redisq import App
from redisq.backend import actions, jobindex, keys
from redisq.ops import jobs
from redisq.ops.cli import main
from tests.support.inproc import running
from tests.support.wait import wait_until


def make_app(url: str, cap: int = 10_000) -> App:
    app = App(url, args_summary_bytes=48)
    app.index_max = cap

    @app.task(name="t.ok")
    def ok(n: int) -> int:
        return n

    @app.task(name="t.bad", retries=0)
    def bad(n: int) -> None:
        if not app.client.exists("heal"):
            raise ValueError(f"bad input {n}")

    @app.task(name="t.again", retries=1, retry_backoff_s=30.0)
    def again(n: int) -> None:
        raise KeyError("missing")

    return app


def settled(app: App, queue: str, n: int) -> bool:
    counts = app.queue(queue).counts()
    return sum(counts.get(s, 0) for s in ("succeeded", "failed", "dead", "retrying")) >= n


def test_an_index_keeps_no_id_longer_than_its_records(redis_url: str) -> None:
    """Ids older than the record TTL are trimmed as new ones come, and an idle queue's index
    expires with its last records (the 1M-job soak found 2.7 MB of ids of expired records)."""
    app = make_app(redis_url)
    app.result_ttl_s = 60.0
    key = keys.status_index("default", "succeeded")
    app.client.zadd(key, {"old-job": int((time.time() - 120) * 1000)})  # its record is gone
    app.enqueue_many("t.ok", [((i,), {}) for i in range(5)])
    with running(app):
        wait_until(lambda: settled(app, "default", 5), what="5 settled jobs")
    assert app.client.zscore(key, "old-job") is None
    assert app.client.zcard(key) == 5
    assert 0 < app.client.pttl(key) <= 60_000
    app.result_ttl_s = 0.0  # records kept for ever: so is the index
    app.enqueue("t.ok", args=(9,))
    with running(app):
        wait_until(lambda: settled(app, "default", 6), what="the 6th settled job")
    assert app.client.ttl(key) == -1 and app.client.zcard(key) == 6


def test_indexes_hold_their_cap_and_series_count_each_attempt(redis_url: str) -> None:
    app = make_app(redis_url, cap=25)
    app.enqueue_many("t.ok", [((i,), {}) for i in range(60)])
    app.enqueue_many("t.bad", [((i,), {}) for i in range(30)])
    with running(app):
        wait_until(lambda: settled(app, "default", 90), what="90 settled jobs")
    sizes = jobindex.index_sizes(app.client, ["default"])["default"]
    assert sizes["succeeded"] == 25 and sizes["dead"] == 25  # trimmed in the settle step
    assert all(n <= 25 for n in sizes.values())
    # The newest are kept: the oldest were trimmed.
    newest = app.client.zrevrange(keys.status_index("default", "succeeded"), 0, 0)
    assert app.job(newest[0].decode()).status == "succeeded"
    series = jobindex.read_series(app.client, ["default"], time.time())
    assert sum(series["processed"]) == 90 and sum(series["failed"]) == 30
    assert any(p is not None for p in series["latency_p50"])
    assert series["depth"][-1] is not None or series["depth"][-2] is not None
    ttl = app.client.ttl(keys.series("default", int(time.time()) // 60))
    assert 0 < ttl <= keys.SERIES_TTL_S


def test_search_filters_and_pages(redis_url: str) -> None:
    app = make_app(redis_url)
    app.enqueue_many("t.ok", [((i,), {}) for i in range(20)])
    bad = [app.enqueue("t.bad", [i]) for i in range(5)]
    app.enqueue("t.ok", [1], queue="other")
    with running(app, queues=("default", "other")):
        wait_until(lambda: settled(app, "default", 25) and settled(app, "other", 1))
    failed = jobs.search(app, jobs.Query(status="failed"))["jobs"]  # dead ones too
    assert {j["id"] for j in failed} == {b.id for b in bad}
    assert all(j["task"] == "t.bad" and j["error_type"] == "ValueError" for j in failed)
    assert jobs.search(app, jobs.Query(error="input 3"))["jobs"][0]["id"] == bad[3].id
    assert jobs.search(app, jobs.Query(task="t.ok", queue="other"))["jobs"][0]["queue"] == "other"
    assert jobs.search(app, jobs.Query(id_prefix=bad[2].id[:10]))["jobs"][0]["id"] == bad[2].id
    first = jobs.search(app, jobs.Query(status="succeeded", limit=8))
    second = jobs.search(app, jobs.Query(status="succeeded", limit=8, offset=first["next_offset"]))
    assert len(first["jobs"]) == 8 and not {j["id"] for j in first["jobs"]} & {
        j["id"] for j in second["jobs"]}
    times = [j["at"] for j in first["jobs"]]
    assert times == sorted(times, reverse=True)
    assert jobs.search(app, jobs.Query(since=time.time() + 60))["jobs"] == []
    assert jobs.search(app, jobs.Query(status="succeeded", limit=3), scan_max=5)["truncated"]


def test_job_detail_retry_now_keeps_history_then_succeeds(redis_url: str) -> None:
    app = make_app(redis_url)
    job = app.enqueue("t.bad", [7])
    with running(app):
        wait_until(lambda: job.status == "dead")
        shown = jobs.detail(app, "default", job.id)
        assert shown["args"] == [7] and shown["attempts"] == 1 and shown["arguments_complete"]
        assert "ValueError: bad input 7" in shown["traceback"]
        assert [e["event"] for e in shown["history"]][-1] == "dead"
        actions.retry_now(app.records, "default", job.id)  # still failing: dead again
        wait_until(lambda: job.status == "dead" and "retry" in str(job.info().get("history")))
        events = [e["event"] for e in jobs.detail(app, "default", job.id)["history"]]
        assert "retry" in events and events[-1] == "dead"
        app.client.set("heal", 1)
        actions.retry_now(app.records, "default", job.id)
        wait_until(lambda: job.status == "succeeded")
    # (A succeeded record goes to a done bucket, which keeps no action history.)
    shown = jobs.detail(app, "default", job.id)
    assert [e["event"] for e in shown["history"]][-1] == "succeeded"
    assert app.client.zscore(keys.status_index("default", "dead"), job.id) is None
    assert app.client.llen(keys.dead("default")) == 0  # its dead letter went back to the queue
    assert app.client.zscore(keys.status_index("default", "succeeded"), job.id) is not None
    with pytest.raises(actions.ActionRefused):
        actions.retry_now(app.records, "default", job.id)  # succeeded: nothing to retry


def test_retrying_job_is_listed_scheduled_and_retried_now(redis_url: str) -> None:
    app = make_app(redis_url)
    job = app.enqueue("t.again", [1])
    with running(app):
        wait_until(lambda: job.status == "retrying")
        assert [j["id"] for j in jobs.search(app, jobs.Query(status="retrying"))["jobs"]] == [job.id]
        assert jobs.waiting(app, "default", "scheduled")[0]["id"] == job.id
        actions.retry_now(app.records, "default", job.id)  # no 30 s wait
        wait_until(lambda: job.status == "dead")
    assert app.client.zcard(keys.status_index("default", "retrying")) == 0
    assert app.client.zcard(keys.delayed("default")) == 0


def test_cancel_and_delete(redis_url: str) -> None:
    app = make_app(redis_url)
    waiting = app.enqueue("t.ok", [1])
    later = app.enqueue("t.ok", [2], delay_s=60)
    assert [j["id"] for j in jobs.waiting(app, "default", "queued")] == [waiting.id]
    actions.cancel(app.records, "default", waiting.id)
    assert waiting.status == "cancelled"
    assert jobs.search(app, jobs.Query(status="cancelled"))["jobs"][0]["id"] == waiting.id
    events = [e["event"] for e in jobs.detail(app, "default", waiting.id)["history"]]
    assert events[0] == "enqueued" and {"cancel", "cancelled"} <= set(events)
    actions.delete(app.records, "default", later.id)
    assert later.status is None and app.client.zcard(keys.delayed("default")) == 0
    actions.delete(app.records, "default", waiting.id)
    assert app.client.zcard(keys.status_index("default", "cancelled")) == 0
    with pytest.raises(actions.ActionRefused):
        actions.delete(app.records, "default", waiting.id)


def test_retry_now_refuses_a_message_that_cannot_run(redis_url: str) -> None:
    app = make_app(redis_url)
    job = app.enqueue("t.ok", [1], delay_s=60)
    for garbage in (b"not json", b"[" * 100_000, b'{"id": "x"}'):
        app.client.hset(keys.job("default", job.id), mapping={"status": "failed",
                                                               "message": garbage})
        with pytest.raises(actions.ActionRefused, match="cannot run"):
            actions.retry_now(app.records, "default", job.id)
    assert app.client.llen(keys.pending("default")) == 0


def test_every_cancel_path_indexes_the_job_as_cancelled(redis_url: str) -> None:
    app = make_app(redis_url)
    queued = app.enqueue("t.ok", [1])
    parent = app.enqueue("t.ok", [2], delay_s=60)
    deferred = app.tasks["t.ok"].enqueue(args=(3,), depends_on=[parent])
    assert deferred.status == "deferred"
    assert queued.cancel() and deferred.cancel()  # the API, not the dashboard's actions
    found = {j["id"] for j in jobs.search(app, jobs.Query(status="cancelled"))["jobs"]}
    assert found == {queued.id, deferred.id}
    assert app.client.zcard(keys.status_index("default", "deferred")) == 0


def test_delete_forgets_a_succeeded_job_whose_record_is_in_a_done_bucket(redis_url: str) -> None:
    app = make_app(redis_url)
    job = app.enqueue("t.ok", [1])
    with running(app):
        wait_until(lambda: job.status == "succeeded")
    assert not app.client.exists(keys.job("default", job.id))  # packed into a bucket
    actions.delete(app.records, "default", job.id)
    assert job.status is None and app.records.get("default", job.id) == {}
    with pytest.raises(actions.ActionRefused):
        actions.delete(app.records, "default", job.id)


def cli(url: str, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args), env={"REDIS_URL": url}, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def test_cli_jobs_job_retry_delete(redis_url: str) -> None:
    app = make_app(redis_url)
    bad = [app.enqueue("t.bad", [i]) for i in range(3)]
    app.enqueue("t.ok", [5])
    with running(app):
        wait_until(lambda: settled(app, "default", 4))
        code, out, _ = cli(redis_url, "jobs", "--status", "failed", "--task", "t.bad",
                           "--since", "1h", "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and {r["id"] for r in rows} == {b.id for b in bad}
        assert rows[0]["at"].endswith("Z") and isinstance(rows[0]["attempts"], int)
        code, out, _ = cli(redis_url, "job", bad[0].id[:12])
        shown = json.loads(out)
        assert code == 0 and shown["id"] == bad[0].id and shown["args"] == [0]
        assert shown["attempts"] == 1 and shown["finished_at"].endswith("Z")
        app.client.set("heal", 1)
        code, out, _ = cli(redis_url, "retry", "--all-failed")
        assert (code, out.strip()) == (0, "3")
        wait_until(lambda: all(b.status == "succeeded" for b in bad))
    later = app.enqueue("t.ok", [9], delay_s=60)
    code, out, _ = cli(redis_url, "delete", later.id, "--yes")
    assert code == 0 and later.status is None and app.client.zcard(keys.delayed("default")) == 0
    code, _, err = cli(redis_url, "cancel", bad[0].id)
    assert code == 1 and "cancelled" in err
    code, _, err = cli(redis_url, "job", "zzzzzzzz")
    assert code == 1 and "no job" in err
