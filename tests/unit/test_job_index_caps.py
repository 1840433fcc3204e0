"""Issue 16 on fakeredis (with Lua): settle.lua keeps every status index at or under its cap
at every step (trimming a hundredth below it once over it), and index_max=0 writes no index
and no series; the series' latency percentiles."""

from __future__ import annotations

import json
import math
import time

import pytest
import redis

from redisq import App
from redisq.backend import jobindex, keys
from redisq.broker.consumer import Consumer
from redisq.model import Envelope, Outcome


@pytest.fixture
def app(fake_redis: redis.Redis) -> App:
    application = App("redis://127.0.0.1:1/0")
    application._client = fake_redis
    return application


def drain(app: App, status: str) -> None:
    consumer = Consumer(app.client, ["default"], consumer_id="c1", mark_jobs="w1")
    while msgs := consumer.reserve(50, 0):
        calls = []
        for msg in msgs:
            env = Envelope.from_dict(json.loads(msg.body))
            calls.append(app.records.settle_call(consumer.id, msg, env, Outcome(
                status, error_type="E", error_message="m"), "w1", app.serializer.dumps))
        app.records.settle_many(calls)


def test_an_index_never_exceeds_its_cap(app: App) -> None:
    app.index_max = 200
    sizes = []
    for _ in range(6):
        app.enqueue_many("t.x", [((i,), {}) for i in range(100)])
        drain(app, "dead")
        sizes.append(app.client.zcard(keys.status_index("default", "dead")))
    assert sizes[:2] == [100, 200] and max(sizes) <= 200 and min(sizes[2:]) >= 198
    newest = app.client.zrevrange(keys.status_index("default", "dead"), 0, -1)
    assert len(set(newest)) == len(newest)
    assert sum(jobindex.read_series(app.client, ["default"], time.time())[
        "failed"]) == 600


def test_index_max_zero_writes_no_index_and_no_series(app: App) -> None:
    app.index_max = 0
    app.enqueue_many("t.x", [((i,), {}) for i in range(10)])
    drain(app, "succeeded")
    assert app.client.keys("*:idx:*") == [] and app.client.keys("*:series:*") == []
    assert app.queue("default").counts()["succeeded"] == 10


def test_percentiles_from_the_latency_histogram() -> None:
    hist = [0] * len(jobindex.LATENCY_BUCKETS_S)
    hist[jobindex.latency_bucket(0.008)] = 90  # the 0.01 bucket
    hist[jobindex.latency_bucket(0.7)] = 9  # 1.0
    hist[jobindex.latency_bucket(50)] = 1  # 60
    assert jobindex.percentile(hist, 0.5) == 0.01
    assert jobindex.percentile(hist, 0.95) == 1.0
    assert jobindex.percentile([0] * len(hist), 0.5) is None
    assert jobindex.latency_bucket(math.inf) == len(jobindex.LATENCY_BUCKETS_S) - 1
    assert jobindex.percentile([0] * (len(hist) - 1) + [3], 0.5) is None


def test_every_model_status_but_queued_and_started_is_indexed() -> None:
    from redisq.model import STATUSES

    assert set(jobindex.INDEXED) == set(STATUSES) - {"queued", "started"}
