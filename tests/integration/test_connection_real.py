"""Connections that never hang, on a real server: a frozen server surfaces as a timeout within
the read deadline, names survive reconnects, and connections the server closed while idle are
replaced before use instead of failing the next command."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from redisq.backend.connection import ConnectionOptions, connect, wait_for_redis
from redisq.backend.embedded import RedisServer
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from tests.support.loops import kill_clients
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)


def test_blocking_move_on_a_frozen_server_times_out_within_the_deadline(
        server: RedisServer) -> None:
    """A blocked BLMOVE whose server froze raises within block + margin, not never."""
    client = connect(server.url, "test", FAST)
    client.ping()
    server.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.blmove("a", "b", 0.5, "RIGHT", "LEFT")  # type: ignore[arg-type]
        took = time.monotonic() - t0
    finally:
        server.resume()
    assert FAST.socket_timeout_s - 0.05 <= took < FAST.socket_timeout_s + 0.5


def test_name_is_resent_on_reconnect(redis_url: str, real_redis: redis.Redis) -> None:
    """After CLIENT KILL the next command reconnects by itself and carries the name again."""
    client = connect(redis_url, "named", FAST)
    client.ping()
    assert kill_clients(real_redis, "redisq:named:") == 1
    assert client.ping()  # the pool notices the closed connection and makes a new one
    names = [c["name"] for c in real_redis.client_list()]
    assert sum(n.startswith("redisq:named:") for n in names) == 1


def test_lean_connection_killed_while_idle_is_replaced_before_use(
        redis_url: str, real_redis: redis.Redis) -> None:
    """The Lua steps' per-thread connection was closed by the server while idle (CLIENT KILL,
    or Redis's `timeout`): the next ack goes through instead of raising."""
    client = connect(redis_url, "idle", FAST)
    Queue(client, "jobs").put_many([b"a", b"b"])
    c = Consumer(client, ["jobs"], consumer_id="c1", block_timeout_s=0.2)
    got = c.reserve(1, timeout_s=0)
    assert kill_clients(real_redis, "redisq:idle:") >= 1
    idle_until = time.monotonic() + 0.6  # longer than the idle check threshold
    wait_until(lambda: time.monotonic() > idle_until, 2, what="an idle connection")
    assert c.ack(got) == 1
    assert [m.body for m in c.reserve(1, timeout_s=0)] == [b"b"]
    assert c.outage.reconnects == 0


def test_wait_for_redis_waits_for_a_late_server(server: RedisServer) -> None:
    client = connect(server.url, "test", FAST)
    server.stop()
    starter = threading.Timer(0.3, server.start)
    starter.start()
    try:
        wait_for_redis(client, 5)
    finally:
        starter.join(5)
    assert client.ping()


def test_wait_for_redis_gives_up(server: RedisServer) -> None:
    client = connect(server.url, "test", FAST)
    server.stop()
    with pytest.raises(redis.ConnectionError):
        wait_for_redis(client, 0.2)


def test_lean_wire_turns_a_socket_error_into_a_redis_connection_error(server: RedisServer) -> None:
    """The hot path reads replies from the parser itself; a reset socket must still reach the
    caller as redis.ConnectionError (which every retry loop catches, unlike a bare OSError),
    and the next call must reconnect and work."""
    from redisq.backend.wire import wire_for

    client = connect(server.url, "test", FAST)
    wire = wire_for(client)
    assert wire.execute([("PING",)]) == [b"PONG"]
    conn = wire._conn()
    parser = conn._parser

    def reset(*args: object, **kwargs: object) -> object:
        raise ConnectionResetError(104, "Connection reset by peer")

    parser.read_response = reset
    with pytest.raises(redis.ConnectionError, match="reset"):
        wire.execute([("PING",)])
    assert conn._sock is None  # dropped, not reused with unread replies
    del parser.read_response  # the socket is healthy again
    assert wire.execute([("SET", "k", "v"), ("GET", "k")]) == [b"OK", b"v"]
