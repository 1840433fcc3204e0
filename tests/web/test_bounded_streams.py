"""The live feeds are bounded and cannot be forged (issue 12, points 3 and 5), over a real HTTP
server: a capped number of streams (503 + Retry-After beyond), one Redis subscription per
process whatever the number of viewers, a bounded lifetime, slots given back even when a
response never started; and only ``job``/``progress`` events reach dashboards from
``redisq:events``."""

from __future__ import annotations

import gc
import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from redisq import App
from redisq.backend import keys
from tests.support.wait import wait_until
from tests.web.sse import SSEClient
from webapp import create_app, state


def numsub(client: redis.Redis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


def pubsub_connections(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if int(c.get("sub", 0)) or int(c.get("psub", 0)))


def serve(flask_app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    state(flask_app).hub.close()


@pytest.fixture
def capped(rq: App) -> Iterator[tuple[str, Flask]]:
    flask_app = create_app({"REDISQ_APP": rq, "web_max_streams": 3, "REDISQ_SSE_KEEPALIVE_S": 0.2})
    for base in serve(flask_app):
        yield base, flask_app


@pytest.fixture
def streams() -> Iterator[list[SSEClient]]:
    opened: list[SSEClient] = []
    yield opened
    for s in opened:
        s.close()


def test_stream_cap_is_503_with_retry_after(capped: tuple[str, Flask], rq: App,
                                            streams: list[SSEClient]) -> None:
    base, flask_app = capped
    streams += [SSEClient(base, "/events"), SSEClient(base, "/events/news"),
                SSEClient(base, "/events")]
    streams[0].next("snapshot")
    hub = state(flask_app).hub
    wait_until(lambda: hub.open_streams == 3, 3, what="three open streams")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "/events/news", timeout=5)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
    assert json.loads(refused.value.read())["error"]
    streams[1].close()  # a viewer leaves: its slot is free again
    wait_until(lambda: hub.open_streams == 2, 3, what="the slot to be given back")
    streams.append(SSEClient(base, "/events/news"))
    wait_until(lambda: streams[-1].status == 200, 3, what="a stream in the freed slot")


def test_one_subscription_for_every_viewer(live_server: str, rq: App,
                                           streams: list[SSEClient]) -> None:
    base = live_server
    streams += [SSEClient(base, "/events"), SSEClient(base, "/events"),
                SSEClient(base, "/events/news")]
    wait_until(lambda: numsub(rq.client, keys.EVENTS_CHANNEL) == 1
               and numsub(rq.client, "news") == 1, 3, what="the subscriptions")
    assert pubsub_connections(rq.client) == 1  # before: one connection per viewer
    rq.publish("news", {"n": 1})
    assert streams[2].next("message") == {"n": 1}
    for s in streams:
        s.close()
    wait_until(lambda: numsub(rq.client, "news") == 0
               and numsub(rq.client, keys.EVENTS_CHANNEL) == 0, 4, what="unsubscribed")


def test_a_channel_nobody_follows_is_unsubscribed(capped: tuple[str, Flask], rq: App,
                                                  streams: list[SSEClient]) -> None:
    base, _ = capped
    events, news = SSEClient(base, "/events"), SSEClient(base, "/events/news")
    streams += [events, news]
    wait_until(lambda: numsub(rq.client, "news") == 1, 3, what="subscribed to news")
    news.close()
    wait_until(lambda: numsub(rq.client, "news") == 0, 3, what="news dropped")
    assert numsub(rq.client, keys.EVENTS_CHANNEL) == 1  # the other viewer keeps its feed


def test_streams_end_after_web_stream_max_s(rq: App) -> None:
    client = create_app({"REDISQ_APP": rq, "web_stream_max_s": 0.3}).test_client()
    for path in ("/events", "/events?max_s=3600", "/events/news?max_s=1e9", "/events?max_s=nan"):
        res = client.get(path)
        assert res.status_code == 200 and res.get_data(as_text=True).startswith("retry:")


def test_a_response_closed_before_its_body_gives_the_slot_back(rq: App) -> None:
    flask_app = create_app({"REDISQ_APP": rq, "web_max_streams": 1})
    client, hub = flask_app.test_client(), state(flask_app).hub
    res = client.get("/events", buffered=False)
    assert res.status_code == 200 and hub.open_streams == 1
    assert client.get("/events/x", buffered=False).status_code == 503
    res.close()  # the client left before a byte was sent: the generator never started
    assert hub.open_streams == 0
    res = client.get("/events/x", buffered=False)
    assert res.status_code == 200
    res.close()
    # A response dropped without close() (a broken server; test clients) frees it too.
    client.get("/events/x", buffered=False)
    gc.collect()
    assert hub.open_streams == 0


def test_a_listener_that_falls_behind_is_ended() -> None:
    from webapp.hub import BACKLOG, Hub, Listener

    hub = Hub(lambda: None, max_streams=1)
    listener = hub._listeners.setdefault("c", set())  # no thread: fill a listener by hand
    slow = Listener(hub, "c")
    listener.add(slow)
    for i in range(BACKLOG):
        slow.put(str(i).encode())
    assert not slow.overflowed
    slow.put(b"one too many")
    assert slow.overflowed and slow.get(0) == b"0"


def test_forged_events_never_reach_dashboards(live_server: str, rq: App,
                                              streams: list[SSEClient]) -> None:
    """Whoever publishes on redisq:events (a Redis client: the web refuses the channel) cannot
    make a dashboard render a snapshot or anything but job and progress events."""
    stream = SSEClient(live_server, "/events")
    streams.append(stream)
    stream.next("snapshot")
    wait_until(lambda: numsub(rq.client, keys.EVENTS_CHANNEL) == 1, 3, what="subscription")
    forged = [{"type": "snapshot", "queues": {"<img src=x>": {"depth": "<b>forged</b>"}}},
              {"type": "redis", "ok": False}, {"type": "message"}, {"type": "snapshot\ndata: x"},
              ["not", "an", "object"], "text", {"no": "type"}]
    for event in forged:
        rq.client.publish(keys.EVENTS_CHANNEL, json.dumps(event))
    rq.client.publish(keys.EVENTS_CHANNEL, b"[" * 100_000)  # too deep to parse
    marker = {"type": "job", "id": "marker", "status": "queued"}
    rq.client.publish(keys.EVENTS_CHANNEL, json.dumps(marker))
    seen: list[tuple[str, str]] = []
    while True:
        item = stream.events.get(timeout=5)
        assert item is not None, "the stream ended"
        seen.append(item)
        if item[0] == "job" and json.loads(item[1])["id"] == "marker":
            break
    assert {name for name, _ in seen} <= {"snapshot", "job", "progress"}
    assert not any("forged" in data or "<img" in data for _, data in seen)
    with pytest.raises(queue.Empty):  # and nothing forged trails behind
        while True:
            name, data = stream.events.get(timeout=0.3) or ("", "")
            assert "forged" not in data and name in ("snapshot", "job", "progress", "")
