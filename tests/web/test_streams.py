"""The live feeds over a real HTTP server: /events (job and progress events, snapshots) and the
/events/<channel> bridge; a stream ends when its client goes away and survives a Redis restart."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from redisq import App
from redisq.backend import keys
from redisq.backend.embedded import RedisServer
from redisq.worker.prodcons import Worker
from tests.support.wait import wait_until
from tests.web.conftest import make_rq
from tests.web.sse import SSEClient
from webapp import create_app


def subscribers(client: redis.Redis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.loads(res.read())


@pytest.fixture
def sse() -> Iterator[list[SSEClient]]:
    opened: list[SSEClient] = []
    yield opened
    for stream in opened:
        stream.close()


def test_events_feed_snapshots_jobs_and_progress(live_server: str, rq: App, worker: Worker,
                                                 sse: list[SSEClient]) -> None:
    stream = SSEClient(live_server, "/events")
    sse.append(stream)
    snap = stream.next("snapshot", where=lambda s: s["workers"])
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert len(snap["workers"]) == 1 and {"queues", "failures", "running"} <= set(snap)
    wait_until(lambda: subscribers(rq.client, keys.EVENTS_CHANNEL) >= 1, 3, what="subscription")
    job_id = post(live_server, "/prodcons", {"task": "web.add", "args": [1, 2]})["job_id"]
    event = stream.next("job", where=lambda e: e["id"] == job_id and e["status"] == "succeeded")
    assert event["task"] == "web.add" and event["queue"] == "default"
    # A running job's progress arrives as it is reported, and shows in the next snapshot.
    job_id = post(live_server, "/prodcons", {"task": "web.steps", "args": [3, "gate"]})["job_id"]
    progress = stream.next("progress", where=lambda e: e["id"] == job_id)
    assert progress["progress"] == 0.5 and progress["message"] == "half way"
    snap = stream.next("snapshot",
                       where=lambda s: s["running"] and s["running"][0]["progress"] > 0)
    assert snap["running"][0]["id"] == job_id and snap["running"][0]["progress"] == 0.5
    assert snap["running"][0]["progress_message"] == "half way"
    rq.client.set("gate", 1)
    stream.next("job", where=lambda e: e["id"] == job_id and e["status"] == "succeeded")


def test_channel_bridge_relays_published_messages(live_server: str, rq: App,
                                                  sse: list[SSEClient]) -> None:
    stream = SSEClient(live_server, "/events/news")
    sse.append(stream)
    wait_until(lambda: subscribers(rq.client, "news") == 1, 3, what="the bridge to subscribe")
    assert post(live_server, "/pubsub", {"channel": "news", "message": {"n": 1}}) == \
        {"receivers": 1}
    assert stream.next("message") == {"n": 1}
    rq.publish("news", "two\nlines")  # JSON-encoded: the line break cannot split the event
    assert stream.next("message") == "two\nlines"
    wait_until(lambda: stream.comments >= 1, 2, what="a keepalive comment")


def test_streams_end_when_the_client_goes_away(live_server: str, rq: App) -> None:
    streams = [SSEClient(live_server, "/events/gone"), SSEClient(live_server, "/events")]
    wait_until(lambda: subscribers(rq.client, "gone") == 1
               and subscribers(rq.client, keys.EVENTS_CHANNEL) == 1, 3, what="subscriptions")
    for stream in streams:
        stream.close()
    # The next keepalive (or snapshot) write fails; the stream's finally drops the subscription.
    wait_until(lambda: subscribers(rq.client, "gone") == 0
               and subscribers(rq.client, keys.EVENTS_CHANNEL) == 0, 4,
               what="the streams to notice their clients left")


def test_streams_end_after_max_s(client: FlaskClient) -> None:
    res = client.get("/events?max_s=0.3")
    text = res.get_data(as_text=True)
    assert res.mimetype == "text/event-stream" and text.startswith("retry: 1000")
    assert "event: snapshot" in text
    res = client.get("/events/news?max_s=0.3")
    assert res.status_code == 200 and ": keepalive" in res.get_data(as_text=True)
    res = client.get("/events/a%20b")
    assert res.status_code == 400 and "channel" in res.get_json()["error"]


@pytest.fixture
def private_live(server: RedisServer) -> Iterator[tuple[str, App]]:
    rq = make_rq(server.url)
    http = make_server("127.0.0.1", 0, create_app({"REDISQ_APP": rq, "REDISQ_SSE_KEEPALIVE_S": 0.2}),
                       threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}", rq
    http.shutdown()
    thread.join(5)
    rq.close()


def test_streams_survive_a_redis_restart(private_live: tuple[str, App], server: RedisServer,
                                         sse: list[SSEClient]) -> None:
    base, _ = private_live
    channel, events = SSEClient(base, "/events/news"), SSEClient(base, "/events")
    sse += [channel, events]
    admin = server.client()
    wait_until(lambda: subscribers(admin, "news") == 1, 3, what="the bridge to subscribe")
    events.next("snapshot")
    server.restart()
    admin = server.client()
    # Same HTTP streams, new Redis connections: the subscribers came back by themselves.
    wait_until(lambda: subscribers(admin, "news") == 1
               and subscribers(admin, keys.EVENTS_CHANNEL) == 1, 8,
               interval_s=0.05, what="the subscribers to reconnect")
    admin.publish("news", json.dumps("after restart"))
    assert channel.next("message") == "after restart"
    events.next("snapshot", timeout_s=3)
    assert not channel.ended(0) and not events.ended(0)
