"""Redis at ``maxmemory`` (policy ``noeviction``): a producer floods a queue of 8 KiB jobs until
Redis refuses writes, while one worker drains it.

The worker must keep completing jobs the whole time (it is the one process that frees
memory), every enqueue that was acknowledged must run, producers get a clear
``OutOfMemoryError`` (nothing half-written), and once the queue is drained Redis has room
again at once (finished records do not keep the payload for their TTL).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq import App
from redisq.backend import finished, keys
from redisq.backend.embedded import RedisServer, free_port
from redisq.backend.registry import Registry
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Outcome
from tests.support.procs import run_cli, start_worker, stop
from tests.support.wait import wait_until

QUEUE = "default"
BLOB = "x" * 8192
FLOOD_S = 2.5
MAX_PAUSE_S = 1.0
PRODUCERS = 3
DRAIN_S = 4.0


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis", port=free_port(),
                      extra_args=("--maxmemory", "8mb", "--maxmemory-policy", "noeviction"))
    srv.start()
    yield srv
    srv.kill()


class Watch(threading.Thread):
    """Samples the queue's completion counter and depth; keeps the longest time without a
    completion while work was queued."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.done = threading.Event()
        self.longest_pause_s = 0.0

    def run(self) -> None:
        last_count, last_change = -1, time.monotonic()
        while not self.done.is_set():
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(keys.stats(QUEUE), "succeeded")
            pipe.llen(keys.pending(QUEUE))
            count_raw, depth = pipe.execute()
            now = time.monotonic()
            count = int(count_raw or 0)
            if count != last_count or depth == 0:
                last_count, last_change = count, now
            self.longest_pause_s = max(self.longest_pause_s, now - last_change)
            time.sleep(0.01)


def flood(app: App, until: float) -> tuple[list[str], int]:
    """Enqueue 8 KiB jobs as fast as one producer can until ``until``; the ids acknowledged
    and how many enqueues Redis refused for memory."""
    acked: list[str] = []
    refused = 0
    while time.monotonic() < until:
        try:
            acked.append(app.enqueue("oom.noop", args=(BLOB,)).id)
        except redis.OutOfMemoryError:
            refused += 1
    return acked, refused


def flood_with(url: str, producers: int, until: float) -> tuple[list[str], int]:
    """``flood`` from several producer processes' worth of threads, each with its own App."""
    results: list[tuple[list[str], int]] = []
    apps = [App(url) for _ in range(producers)]
    threads = [threading.Thread(target=lambda a=a: results.append(flood(a, until)))
               for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in apps:
        a.close()
    return [i for ids, _ in results for i in ids], sum(n for _, n in results)


def test_worker_drains_at_maxmemory_and_redis_has_room_after(small_server: RedisServer) -> None:
    url = small_server.url
    admin = small_server.client()
    producer = App(url)
    worker = start_worker(url, "--app", "tests.oom_app:app", "--concurrency", "2")
    watch = Watch(small_server.client())
    try:
        wait_until(lambda: admin.zcard(keys.WORKERS) == 1, 5, what="the worker to register")
        watch.start()
        acked, refused = flood_with(url, PRODUCERS, time.monotonic() + FLOOD_S)
        assert refused > 0, "the flood never reached maxmemory"
        wait_until(lambda: admin.llen(keys.pending(QUEUE)) == 0, DRAIN_S, what="the drain")
        watch.done.set()
        watch.join()
        # Every acknowledged enqueue ran (its record read where it lives: a succeeded job's
        # is in a done bucket; one pipelined round trip of record.lua steps).
        calls = [("record", *finished.read_call(QUEUE, job_id)) for job_id in acked]

        def statuses() -> set[str]:
            return {finished.record_from_reply(reply, QUEUE, job_id).get("status", "")
                    for job_id, reply in zip(acked, producer.records.scripts.run_many(calls),
                                             strict=True)}

        wait_until(lambda: statuses() == {"succeeded"}, 2,
                   what="every acknowledged job to succeed")
        print(f"acked={len(acked)} refused={refused} longest_pause_s="
              f"{watch.longest_pause_s:.3f} used_memory={admin.info('memory')['used_memory']}")
        # Room again at once: no waiting for the 24 h result TTL.
        producer.enqueue("oom.noop", args=(BLOB,))
        assert watch.longest_pause_s <= MAX_PAUSE_S
        assert worker.poll() is None, "the worker died"
    finally:
        watch.done.set()
        stop(worker)
        producer.close()
        admin.close()


def fill(admin: redis.Redis) -> list[str]:
    """Fill Redis with other keys until it refuses a write, then lower maxmemory a little
    under what is used (client buffers come and go: the edge alone would flicker); the
    fillers' names."""
    names: list[str] = []
    while True:
        try:
            admin.set(f"filler:{len(names)}", b"x" * 65536)
        except redis.OutOfMemoryError:
            break
        names.append(f"filler:{len(names)}")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 2**20)
    return names


def worker_entry(admin: redis.Redis) -> dict[str, object]:
    workers = Registry(admin).workers()
    return workers[0] if workers else {}


def test_a_full_redis_is_said_once_and_shown_and_enqueues_fail_cleanly(
        small_server: RedisServer) -> None:
    url = small_server.url
    admin = small_server.client()
    producer = App(url)
    producer.task(name="oom.noop")(lambda blob: len(blob))
    worker = start_worker(url, "--app", "tests.oom_app:app")
    try:
        wait_until(lambda: admin.zcard(keys.WORKERS) == 1, 5, what="the worker to register")
        producer.enqueue("oom.noop", args=("x",)).result(5)  # the queue is known, warm
        fillers = fill(admin)
        before = admin.dbsize()
        for send in (lambda: producer.enqueue("oom.noop", args=("x",)),  # MULTI/EXEC
                     lambda: producer.enqueue("oom.noop", args=("x",), job_id="given"),  # Lua
                     lambda: producer.tasks["oom.noop"].map([("x",), ("y",)])):  # bulk
            with pytest.raises(redis.OutOfMemoryError):
                send()
        assert admin.dbsize() == before  # nothing half-written
        # The idle worker's blocking reserve is refused every poll, its heartbeat says so.
        wait_until(lambda: worker_entry(admin).get("redis_full") is True
                   and int(worker_entry(admin).get("oom_refusals", 0)) >= 10, 5,  # type: ignore[call-overload]
                   what="the registry entry to say redis_full")
        shown = run_cli(url, "info")
        assert "REDIS FULL" in shown.stdout and "FULL: enqueues are refused" in shown.stdout
        admin.delete(*fillers)
        assert producer.enqueue("oom.noop", args=("x",)).result(5) == 1
        wait_until(lambda: worker_entry(admin).get("redis_full") is False, 3,
                   what="the entry to say Redis has room")
    finally:
        stop(worker)
        producer.close()
        admin.close()
    assert worker.stderr is not None
    log = worker.stderr.read().decode()
    assert log.count("Redis is at maxmemory") == 1, log  # not one per refusal


def test_every_consuming_step_works_at_maxmemory(small_server: RedisServer) -> None:
    """Reserve (batch, and the idle blocking wait), start, settle, nack, bury, ack, lease
    renewal, stale recovery and release, one by one, while Redis refuses a plain write."""
    url = small_server.url
    admin = small_server.client()
    producer = App(url)
    jobs = [producer.enqueue("oom.noop", args=(str(i),)) for i in range(5)]
    client = redis.Redis.from_url(url)
    consumer = Consumer(client, [QUEUE], consumer_id="c1", lease_s=5, block_timeout_s=0.2,
                        mark_jobs="w1")
    fill(admin)
    with pytest.raises(redis.OutOfMemoryError):
        admin.set("proof", "Redis refuses a write")
    try:
        taken = consumer.reserve(4, 0)  # reserve.lua (+ renew.lua, requeue_stale.lua)
        assert len(taken) == 4 and {m.before for m in taken} == {"queued"}
        assert producer.records.start("w1", [Envelope.from_dict(json.loads(taken[0].body))])
        consumer.heartbeat()
        assert consumer.nack(taken[1]) and consumer.bury(taken[2], b'{"reason": "test"}')
        assert consumer.ack([taken[3]]) == 1
        env = Envelope.from_dict(json.loads(taken[0].body))
        call = producer.records.settle_call("c1", taken[0], env, Outcome("succeeded"), "w1",
                                            producer.serializer.dumps)
        assert producer.records.settle_many([call]) == [1]
        assert jobs[0].status == "succeeded"
        assert consumer.requeue_stale() == 0
        assert len(consumer.reserve(2, 0.3)) == 2  # the nacked one and the last one
        assert consumer.reserve(1, 0.3) == []  # empty: BLMOVE refused, a short poll instead
        assert consumer.pressure.full
        consumer.close(release=True)  # release.lua gives the two held ones back
        assert admin.llen(keys.pending(QUEUE)) == 2
        assert not admin.exists(keys.lease(QUEUE, "c1"))
    finally:
        client.close()
        producer.close()
        admin.close()
