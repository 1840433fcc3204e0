"""Finished records in done buckets (redisq/backend/finished.py): the packed form and the
choice of bucket (pure; the clock is passed in), and the settle/read round trip on fakeredis."""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from redisq import App
from redisq.backend import finished, keys
from redisq.backend.finished import (
    MAX_WIDTH_MS,
    MIN_WIDTH_MS,
    SEP,
    bucket_end_ms,
    bucket_width_ms,
    newest,
    pack,
    unpack,
)
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Outcome

T0 = 1_764_765_029.123


def test_pack_and_unpack_round_trip() -> None:
    value = pack("succeeded", "app.tasks.add", T0, T0 + 1.5, T0 + 1.75, 2, "host-42-ab12",
                 "[1,2]", '{"sum":3}')
    assert value.startswith(SEP)  # settle.lua puts the progress message in front
    assert unpack("half way" + value) == {
        "status": "succeeded", "task": "app.tasks.add", "enqueued_at": "1764765029.123",
        "started_at": "1764765030.623", "finished_at": "1764765030.873", "attempts": "2",
        "worker": "host-42-ab12", "args": "[1,2]", "result": '{"sum":3}',
        "progress_message": "half way"}


def test_a_null_result_and_no_arguments_cost_nothing() -> None:
    value = pack("succeeded", "t", T0, T0, T0, 1, "w", None, "null")
    assert value.endswith(SEP + SEP)  # empty summary, empty result
    record = unpack(value)
    assert record["result"] == "null" and "args" not in record
    assert "progress_message" not in record


def test_a_separator_in_a_name_cannot_shift_the_fields() -> None:
    record = unpack(pack("succeeded", "t\x1fx", T0, T0, T0, 3, "w\x1f1", None, "7"))
    assert (record["task"], record["worker"], record["attempts"], record["result"]) == (
        "t x", "w 1", "3", "7")


def test_headers_are_an_eleventh_field_only_when_a_job_has_them() -> None:
    with_headers = pack("succeeded", "t", T0, T0, T0, 1, "w", None, "1", '{"r":"\\u001f"}')
    assert unpack(with_headers)["headers"] == '{"r":"\\u001f"}'
    assert unpack(with_headers)["result"] == "1"
    assert "headers" not in unpack(pack("succeeded", "t", T0, T0, T0, 1, "w", None, "1"))


def test_a_succeeded_records_headers_survive_the_bucket(app: App) -> None:
    job = app.enqueue("t.x", options={"headers": {"request_id": "r-1"}})
    settle(app, "succeeded", result_json="7")
    assert app.client.exists(keys.job("default", job.id)) == 0  # packed, headers and all
    assert job.headers == {"request_id": "r-1"} and job.result(1) == 7


def test_a_cancelled_record_has_no_result() -> None:
    record = unpack(pack("cancelled", "t", T0, T0, T0 + 1, 1, "w", None, "null"))
    assert record["status"] == "cancelled" and "result" not in record


def test_times_keep_milliseconds_and_survive_clock_skew() -> None:
    """A worker's clock behind the producer's: started before enqueued (negative delta)."""
    record = unpack(pack("succeeded", "t", T0, T0 - 2.5, T0 - 2.0, 1, "w", None, "1"))
    assert record["started_at"] == f"{T0 - 2.5:.3f}" and record["finished_at"] == f"{T0 - 2:.3f}"


@given(result=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                           lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
                           max_leaves=8),
       task=st.from_regex(r"[a-z_.]{1,40}", fullmatch=True),
       args=st.lists(st.text(max_size=20), max_size=3))
def test_any_json_result_and_summary_survive(result: object, task: str, args: list[str]) -> None:
    """JSON escapes the separator: results and summaries never break the packed form."""
    result_json = json.dumps(result, separators=(",", ":"))
    summary = json.dumps(args, ensure_ascii=False)
    record = unpack(pack("succeeded", task, T0, T0, T0, 1, "w", summary, result_json))
    assert json.loads(record["result"]) == result and record["task"] == task
    assert record.get("args", "[]") == summary


@pytest.mark.parametrize("value", [b"", b"plain text", SEP * 9, "x" + SEP + "z" + SEP * 8,
                                   SEP + "s" + SEP + "t" + SEP + "not-b36!" + SEP * 6])
def test_what_is_not_a_packed_record_reads_as_nothing(value: bytes | str) -> None:
    assert unpack(value) == {}


def test_newest_picks_the_latest_finish() -> None:
    old = pack("succeeded", "t", T0, T0, T0 + 1, 1, "w", None, "1")
    new = pack("succeeded", "t", T0 + 50, T0 + 50, T0 + 60, 1, "w", None, "2")
    assert newest([new.encode(), old.encode()])["result"] == "2"
    assert newest([old, "garbage", new])["result"] == "2"
    assert newest(["garbage"]) == {}


@pytest.mark.parametrize(("ttl_ms", "width"), [
    (100, MIN_WIDTH_MS), (1_000, MIN_WIDTH_MS), (16_000, MIN_WIDTH_MS), (60_000, 3_750),
    (3_600_000, 225_000), (86_400_000, MAX_WIDTH_MS), (30 * 86_400_000, MAX_WIDTH_MS)])
def test_bucket_width_is_a_sixteenth_of_the_ttl_within_1s_and_1h(ttl_ms: int, width: int) -> None:
    assert bucket_width_ms(ttl_ms) == width


@given(now_ms=st.integers(1_600_000_000_000, 2_000_000_000_000),
       ttl_ms=st.integers(1, 40 * 86_400_000))
def test_a_record_lives_its_ttl_and_at_most_one_width_more(now_ms: int, ttl_ms: int) -> None:
    end = bucket_end_ms(now_ms, ttl_ms)
    width = bucket_width_ms(ttl_ms)
    assert end % width == 0
    assert now_ms + ttl_ms <= end < now_ms + ttl_ms + width


def test_records_finishing_close_together_share_a_bucket() -> None:
    """A day's TTL: everything finished within the same hour of the clock goes to one bucket."""
    ttl = 86_400_000
    start = 1_764_763_200_001  # just after a multiple of an hour
    ends = {bucket_end_ms(start + i * 60_000, ttl) for i in range(60)}
    assert len(ends) == 1


# -- the settle step and the read, on fakeredis -----------------------------------------------

@pytest.fixture
def app(fake_redis: redis.Redis) -> App:
    application = App("redis://127.0.0.1:1/0")
    application._client = fake_redis
    return application


def settle(app: App, status: str, ttl_s: float | None = None, **outcome: object) -> Envelope:
    consumer = Consumer(app.client, ["default"], consumer_id="c1", mark_jobs="w1")
    (msg,) = consumer.reserve(1, 0)
    env = Envelope.from_dict(json.loads(msg.body))
    if ttl_s is not None:
        app.records.result_ttl_s = ttl_s
    app.records.settle_many([app.records.settle_call(consumer.id, msg, env,
                                                     Outcome(status, **outcome),  # type: ignore[arg-type]
                                                     "w1", app.serializer.dumps)])
    return env


def test_a_succeeded_record_leaves_its_key_for_a_bucket(app: App) -> None:
    job = app.enqueue("t.x", args=(1,))
    settle(app, "succeeded", result_json="7")
    assert app.client.exists(keys.job("default", job.id)) == 0
    (end,) = app.client.zrange(keys.done("default"), 0, -1)
    bucket = keys.done_bucket("default", int(end))
    assert app.client.hexists(bucket, job.id)
    ttl_ms = int(app.records.result_ttl_s * 1000)
    assert ttl_ms <= app.client.pttl(bucket) <= ttl_ms + bucket_width_ms(ttl_ms)
    info = job.info()
    assert info["status"] == "succeeded" and info["args"] == "[1]" and job.result(1) == 7
    assert info["queue"] == "default" and info["worker"] == "w1" and info["progress"] == "1"
    assert job.status == "succeeded" and app.job(job.id).id == job.id


@pytest.mark.parametrize("status", ["failed", "dead"])
def test_a_failed_or_dead_record_stays_a_key(app: App, status: str) -> None:
    job = app.enqueue("t.x")
    settle(app, status, error_type="E", error_message="boom")
    assert app.client.hget(keys.job("default", job.id), "status") == status.encode()
    assert app.client.zcard(keys.done("default")) == 0


def test_a_record_kept_for_ever_or_whole_stays_a_key(fake_redis: redis.Redis) -> None:
    for ttl_s, summary in ((0.0, 48), (60.0, -1)):
        app = App("redis://127.0.0.1:1/0", args_summary_bytes=summary)
        app._client = fake_redis
        job = app.enqueue("t.x")
        settle(app, "succeeded", ttl_s=ttl_s, result_json="1")
        assert app.client.hget(keys.job("default", job.id), "status") == b"succeeded"
        assert job.result(1) == 1
    assert fake_redis.zcard(keys.done("default")) == 0


def test_the_last_progress_message_is_kept(app: App) -> None:
    job = app.enqueue("t.x")
    consumer = Consumer(app.client, ["default"], consumer_id="c1", mark_jobs="w1")
    (msg,) = consumer.reserve(1, 0)
    app.records.report_progress("default", job.id, 0.5, "half\x1fway")
    env = Envelope.from_dict(json.loads(msg.body))
    app.records.settle_many([app.records.settle_call(consumer.id, msg, env,
                                                     Outcome("succeeded"), "w1",
                                                     app.serializer.dumps)])
    assert job.info()["progress_message"] == "half way"  # the separator cannot be kept


def test_a_late_progress_report_does_not_recreate_a_finished_record(app: App) -> None:
    job = app.enqueue("t.x")
    settle(app, "succeeded", result_json="1")
    app.records.report_progress("default", job.id, 0.9, "late")  # a duplicate run's
    assert app.client.exists(keys.job("default", job.id)) == 0
    assert job.info()["status"] == "succeeded"


def test_the_read_call_names_the_bucket_index() -> None:
    ks, argv = finished.read_call("q", "abc")
    assert ks == [keys.job("q", "abc"), keys.done("q")] and argv == ["abc"]
    assert keys.done_bucket("q", 5) == keys.done("q") + ":5"  # what the scripts build


def test_done_buckets_can_be_turned_off(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Records.done_buckets = False``: every finished record a key of its own, as before."""
    monkeypatch.setattr(app.records, "done_buckets", False)
    job = app.enqueue("t.x")
    settle(app, "succeeded", result_json="3")
    assert app.client.hget(keys.job("default", job.id), "status") == b"succeeded"
    assert 0 < app.client.ttl(keys.job("default", job.id)) <= app.records.result_ttl_s
    assert app.client.zcard(keys.done("default")) == 0 and job.result(1) == 3
