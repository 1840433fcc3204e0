"""Poison messages against real worker processes and a real server: whatever is LPUSHed or
PUBLISHed raw (a 100,000-deep array, 16 MiB of garbage, bad UTF-8, wrong shapes and types, an
unknown task), the worker stays up, dead-letters it with the reason, and the next good job runs
within a second."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from redisq import JobFailed
from redisq.backend import keys
from redisq.backend.dead import DEAD_HEAD_BYTES, dead_message
from redisq.backend.registry import Registry
from tests import worker_app
from tests.support.procs import start_worker, stop
from tests.support.wait import wait_until

DEEP = b"[" * 100_000 + b"]" * 100_000
GARBAGE = b"\xff" + os.urandom(16 * 1024 * 1024 - 1)  # 16 MiB; \xff: never JSON, never UTF-8

#: raw message → (error type, a piece of the reason); the ones with an id also settle its record.
POISON: dict[bytes, tuple[str, str]] = {
    DEEP: ("MessageTooDeep", "more than 64 levels deep"),
    GARBAGE: ("MessageTooLarge", "16,777,216 bytes is larger than max_message_bytes=1,048,576"),
    b'{"id":"p-deep","task":"t.record","args":' + DEEP + b"}": ("MessageTooDeep", "64 levels"),
    b'\xff\xfe{"task": "t.record"}': ("BadMessage", "malformed message"),
    b'{"id":"p-utf8","task":"t.record","args":["\xc3\x28"]}': ("BadMessage", "decode"),
    b"[1, 2, 3]": ("BadMessage", "JSON object, got list"),
    b'"just text"': ("BadMessage", "JSON object, got str"),
    b'{"id":"p-args","task":"t.record","args":"seven"}': ("BadMessage", "'args' must be list"),
    b'{"id":"p-bool","task":"t.record","args":[1],"attempt":true}': ("BadMessage", "'attempt'"),
    b'{"id":"p-zero","task":"t.record","args":[1],"attempt":0}': ("BadMessage", "'attempt'"),
    b'{"id":"p-queue","task":"t.record","args":[1],"queue":7}': ("BadMessage", "'queue'"),
    b'{"id":"p-unknown","task":"no.such.task","args":[]}': ("UnknownTask", "unknown task"),
}


def use(url: str) -> redis.Redis:
    worker_app.app._url = url
    worker_app.app.close()
    return worker_app.app.client


def started(r: redis.Redis, n: int = 1) -> None:
    wait_until(lambda: len(Registry(r).workers()) >= n, 8, interval_s=0.02,
               what="the worker to start")


def dead_entries(r: redis.Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(e) for e in r.lrange(key, 0, -1)]


def test_prodcons_worker_survives_every_poison_and_keeps_working(redis_url: str) -> None:
    r = use(redis_url)
    worker = start_worker(redis_url)
    try:
        started(r)
        for body in POISON:
            r.lpush(keys.pending("default"), body)
        t0 = time.monotonic()
        good = worker_app.record.delay(7)
        assert good.result(5) == 14
        assert time.monotonic() - t0 < 1.0, "the good job behind the poison took over a second"
        wait_until(lambda: r.llen(keys.dead("default")) == len(POISON), 5, what="dead letters")
        assert worker.poll() is None  # still running
        by_message = {dead_message(d): d for d in dead_entries(r, keys.dead("default"))}
        # Each one is kept byte for byte, but the one over the size cap: its head and digest.
        big = by_message.pop(GARBAGE[:DEAD_HEAD_BYTES])
        assert big["message_truncated"] and big["message_bytes"] == len(GARBAGE)
        assert big["message_sha256"] == hashlib.sha256(GARBAGE).hexdigest()
        assert set(by_message) == set(POISON) - {GARBAGE}
        for body, (error_type, reason) in POISON.items():
            entry = big if body is GARBAGE else by_message[body]
            assert entry["error_type"] == error_type, (body[:60], entry["reason"])
            assert reason in entry["reason"], (body[:60], entry["reason"])
            assert entry["message_bytes"] == len(body)
        # Messages that name a job: the record says dead (a waiting producer is told).
        for jid, error_type in (("p-deep", "MessageTooDeep"), ("p-args", "BadMessage"),
                                ("p-unknown", "UnknownTask")):
            record = worker_app.app.job(jid, "default")
            assert record is not None and record.status == "dead"
            with pytest.raises(JobFailed) as failed:
                record.result(1)
            assert failed.value.error_type == error_type
        assert worker_app.record.delay(8).result(2) == 16 and worker.poll() is None
        assert r.llen(keys.pending("default")) == 0
    finally:
        stop(worker)
    # Requeue brings back what can run (the job of a task this worker lacks); poison stays.
    assert worker_app.app.requeue_dead("default") == 1
    assert r.lrange(keys.pending("default"), 0, -1) == [
        b'{"id":"p-unknown","task":"no.such.task","queue":"default",'
        b'"attempt":1,"enqueued_at":0.0}']
    assert r.llen(keys.dead("default")) == len(POISON) - 1


def test_a_worker_with_a_smaller_cap_fails_the_job_instead_of_hanging(redis_url: str) -> None:
    r = use(redis_url)
    big = worker_app.record.delay("x" * 5000)  # the producer's cap is 1 MiB
    message = r.lindex(keys.pending("default"), 0)  # (the record keeps no copy of it)
    worker = start_worker(redis_url, REDISQ_MAX_MESSAGE_BYTES="4096")
    try:
        started(r)
        with pytest.raises(JobFailed) as failed:
            big.result(5)
        assert failed.value.error_type == "MessageTooLarge" and "4,096" in failed.value.message
        assert worker_app.record.delay(3).result(2) == 6 and worker.poll() is None
        (entry,) = dead_entries(r, keys.dead("default"))
        assert entry["job_id"] == big.id and entry["message_truncated"]
        assert entry["message_sha256"] == hashlib.sha256(message).hexdigest()
        assert dead_message(entry) == message[:DEAD_HEAD_BYTES]
    finally:
        stop(worker)


def cpu_s(pid: int) -> float:
    """The CPU time (user + system, all threads) process ``pid`` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def test_pubsub_worker_survives_poison_published_raw(redis_url: str) -> None:
    """The next good message is handled within a second of a plain subscriber getting it,
    and the poison costs the worker under a second of CPU. Not one wall-clock second from
    the publish, as this test had: that is mostly moving 16 MiB (0.25 s idle, 1.2 s seen on
    a loaded machine), which says more about the machine than about the worker. A plain
    redis-py subscriber on the same channel gets the same bytes at the same time under the
    same load, so what the worker takes beyond it is the worker's doing (a stall, a backoff,
    a resubscription); its CPU time, which load hardly stretches, is what the poison cost it
    (parsing or keeping the 16 MiB would show there)."""
    r = use(redis_url)
    worker = start_worker(redis_url, "--mode", "pubsub", "--channels", "events")
    poison = {DEEP: "MessageTooDeep", GARBAGE: "MessageTooLarge",
              b'{"kind": "\xc3\x28"}': "BadMessage", b"{not json": "BadMessage",
              b"[1, 2]": "TypeError"}  # valid JSON the handler cannot take: its error
    plain_got_good: list[float] = []  # when the plain subscriber got the first good message

    def plain(message: dict[str, Any]) -> None:
        if not plain_got_good and len(message["data"]) < 100 and b"after" in message["data"]:
            plain_got_good.append(time.monotonic())

    reference = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    reference.subscribe(events=plain)
    listener = reference.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        wait_until(lambda: r.pubsub_numsub("events")[0][1] >= 2, 8, what="the subscriptions")
        cpu0 = cpu_s(worker.pid)
        for body in poison:
            r.publish("events", body)
        wait_until(lambda: worker_app.app.publish("events", {"kind": "after"})
                   and r.hget("events", "after"), 5, interval_s=0.02, what="a good message")
        late = time.monotonic() - wait_until(lambda: plain_got_good, 5, what="the plain one")[0]
        wait_until(lambda: r.llen(keys.channel_dead("events")) == len(poison), 5,
                   what="dead letters")
        cpu = cpu_s(worker.pid) - cpu0
        assert late < 1.0, f"the worker handled the good message {late:.2f} s after a plain client"
        assert cpu < 1.0, f"the poison cost the worker {cpu:.2f} s of CPU"
        assert worker.poll() is None
        by_message = {dead_message(d): d for d in dead_entries(r, keys.channel_dead("events"))}
        assert by_message[GARBAGE[:DEAD_HEAD_BYTES]]["message_truncated"]
        assert {b: d["error_type"] for b, d in by_message.items()} == {
            GARBAGE[:DEAD_HEAD_BYTES] if b is GARBAGE else b: e for b, e in poison.items()}
    finally:
        listener.stop()
        listener.join(2)
        reference.close()
        stop(worker)


def test_aio_and_cli_take_64_levels(redis_url: str) -> None:
    import asyncio

    from click.testing import CliRunner

    from redisq import App
    from redisq.aio import AsyncProducer
    from redisq.ops.cli import main

    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    app = App(redis_url)

    async def produce() -> None:
        async with AsyncProducer(app) as producer:
            await producer.enqueue("t.any", args=(deep,))
            await producer.publish("events", deep)

    asyncio.run(produce())
    out = CliRunner().invoke(main, ["enqueue", "t.any", "--args", json.dumps([deep])],
                             env={"REDIS_URL": redis_url}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["publish", "events", json.dumps(deep)],
                             env={"REDIS_URL": redis_url}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert app.client.llen(keys.pending("default")) == 2
    app.close()
