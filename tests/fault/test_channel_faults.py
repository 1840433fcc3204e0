"""Subscribers re-subscribe by themselves after a blackhole, a frozen server and CLIENT KILL;
a durable channel's subscriber also receives what was published while it was cut off."""

from __future__ import annotations

import time

import pytest

from redisq.channel import Channel, Subscriber
from redisq.connection import ConnectionOptions, connect
from redisq.server import RedisServer
from tests.support.loops import SubscriberLoop
from tests.support.proxy import FaultProxy
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)
DEADLINE_S = 5.0


def subscriber(url: str, durable: bool = False) -> SubscriberLoop:
    sub = Subscriber(connect(url, "test-sub", FAST), channels=[] if durable else ["news"],
                     durable=["news"] if durable else [], ping_interval_s=0.3, pong_timeout_s=0.5)
    loop = SubscriberLoop(sub)
    loop.start()
    return loop


def publish_until_received(server: RedisServer, loop: SubscriberLoop, durable: bool) -> None:
    """Publish probes until one arrives: proves the subscription is live again."""
    chan = Channel(server.client(), "news", durable=durable)
    token = f"probe-{time.monotonic_ns()}".encode()

    def probe() -> bool:
        chan.publish(token)
        return token in loop.received

    wait_until(probe, DEADLINE_S, interval_s=0.1, what="a live subscription")


@pytest.mark.parametrize("durable", [False, True])
def test_blackhole(server: RedisServer, durable: bool) -> None:
    with FaultProxy(server.port) as proxy:  # type: ignore[arg-type]
        loop = subscriber(proxy.url, durable)
        try:
            publish_until_received(server, loop, durable)
            proxy.mode = "blackhole"
            time.sleep(0.2)
            missed = Channel(server.client(), "news", durable=durable)
            for i in range(5):
                missed.publish(f"during-{i}".encode())
            wait_until(lambda: loop.sub.outage.down, DEADLINE_S, what="the PONG deadline")
            proxy.mode = "pass"
            publish_until_received(server, loop, durable)
            assert loop.sub.reconnects >= 1
            during = [m for m in loop.received if m.startswith(b"during")]
            if durable:
                assert during == [f"during-{i}".encode() for i in range(5)]  # once, in order
        finally:
            loop.stop()


def test_frozen_server(server: RedisServer) -> None:
    loop = subscriber(server.url, durable=True)
    try:
        publish_until_received(server, loop, True)
        server.pause()
        wait_until(lambda: loop.sub.outage.down, DEADLINE_S, what="the PONG deadline")
        server.resume()
        publish_until_received(server, loop, True)
        assert loop.sub.reconnects >= 1
    finally:
        loop.stop()


@pytest.mark.parametrize("durable", [False, True])
def test_client_kill(server: RedisServer, durable: bool) -> None:
    loop = subscriber(server.url, durable)
    try:
        publish_until_received(server, loop, durable)
        admin = server.client()
        admin.client_kill_filter(_type="pubsub")
        chan = Channel(admin, "news", durable=durable)
        for i in range(3):
            chan.publish(f"gap-{i}".encode())
        publish_until_received(server, loop, durable)
        assert loop.sub.reconnects >= 1
        # Exactly one subscription on the server (no duplicates after re-subscribing).
        assert admin.pubsub_numsub("news")[0][1] == 1
        if durable:
            gap = [m for m in loop.received if m.startswith(b"gap")]
            assert gap == [b"gap-0", b"gap-1", b"gap-2"]
    finally:
        loop.stop()
