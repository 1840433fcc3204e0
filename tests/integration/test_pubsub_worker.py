"""The pubsub worker in-process against a real server: handlers, dead letters, stopping."""

from __future__ import annotations

import json
import threading
import time

import pytest

from redisq import App, ConfigError, config
from redisq.backend import keys
from redisq.worker.pubsub import PubSubWorker
from tests.support.inproc import running
from tests.support.wait import wait_until


def subscribed(app: App, channel: str) -> None:
    wait_until(lambda: app.client.pubsub_numsub(channel)[0][1] >= 1, 5, what="the subscription")


def test_failing_and_malformed_messages_are_dead_lettered_and_work_goes_on(app: App) -> None:
    got: list[dict] = []

    @app.subscriber("orders")
    def on_order(message: dict) -> None:
        if message.get("bad"):
            raise ValueError(f"cannot take order {message['n']}")
        got.append(message)

    with running(app, PubSubWorker) as worker:
        subscribed(app, "orders")
        app.publish("orders", {"n": 1})
        app.publish("orders", {"n": 2, "bad": True})
        app.client.publish("orders", b"{not json")
        app.publish("orders", {"n": 3})
        wait_until(lambda: len(got) == 2 and app.client.llen(keys.channel_dead("orders")) == 2,
                   5, what="two handled, two dead letters")
        wait_until(lambda: worker.state()["failed"] == 2, 2, what="the counts")
        assert worker.state()["processed"] == 2 and worker.state()["channels"] == ["orders"]
    assert [m["n"] for m in got] == [1, 3]
    dead = [json.loads(e) for e in app.client.lrange(keys.channel_dead("orders"), 0, -1)]
    by_type = {d["error_type"]: d for d in dead}
    assert by_type["ValueError"]["reason"].startswith("cannot take order 2")
    assert "Traceback" in by_type["ValueError"]["reason"]
    assert json.loads(by_type["ValueError"]["message"]) == {"n": 2, "bad": True}
    assert by_type["BadMessage"]["reason"].startswith("malformed message")
    assert by_type["BadMessage"]["message"] == "{not json"


def test_stop_lets_running_handlers_finish(app: App) -> None:
    started, finished = threading.Event(), threading.Event()

    @app.subscriber("slow")
    def on_slow(message: dict) -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    with running(app, PubSubWorker, grace_s=5) as worker:
        subscribed(app, "slow")
        app.publish("slow", {"n": 1})
        assert started.wait(5)
        worker.stop()
    assert finished.is_set()  # the context joined the worker only after the handler ended


def test_forced_stop_does_not_wait_for_handlers(app: App) -> None:
    started, release = threading.Event(), threading.Event()

    @app.subscriber("stuck")
    def on_stuck(message: dict) -> None:
        started.set()
        release.wait(10)

    settings = config.load({"block_timeout_s": 0.3, "lease_s": 1.5, "grace_s": 30}, {})
    worker = PubSubWorker(app, settings)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
    thread.start()
    try:
        subscribed(app, "stuck")
        app.publish("stuck", {})
        assert started.wait(5)
        worker.stop()
        time.sleep(0.3)  # it now waits for the handler (grace_s=30) ...
        assert thread.is_alive()
        worker.stop(force=True)  # ... until a second signal
        thread.join(3)
        assert codes == [1]
    finally:
        release.set()
        thread.join(3)


def test_channels_must_have_handlers(app: App) -> None:
    @app.subscriber("known")
    def on_known(message: object) -> None: ...

    with pytest.raises(ConfigError, match="unknown-channel"):
        PubSubWorker(app, config.load({"channels": "known,unknown-channel"}, {}))
    with pytest.raises(ConfigError, match="at least one"):
        PubSubWorker(App(app.url), config.load({}, {}))
