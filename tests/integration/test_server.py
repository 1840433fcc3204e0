"""The private test server helper: restart keeps acknowledged writes, pause freezes, a taken
port fails loudly, ensure_server reuses a running server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from redisq.backend.connection import ConnectionOptions, connect
from redisq.backend.embedded import RedisServer, ensure_server, find_server_binary
from redisq.broker.queue import Queue

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)


def test_binary_found() -> None:
    assert Path(find_server_binary()).exists()


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_restart_keeps_every_acknowledged_write(server: RedisServer, crash: bool) -> None:
    """AOF with appendfsync always: a write whose reply arrived survives even a SIGKILL."""
    q = Queue(server.client(), "keep")
    for i in range(100):
        q.put(f"m{i}".encode())
    old_pid = server.pid
    server.restart(kill=crash)
    assert server.pid != old_pid and server.running()
    assert Queue(server.client(), "keep").depth() == 100


def test_pause_freezes_and_resume_thaws(server: RedisServer) -> None:
    """While paused nothing answers (the connection stays open); after resume all is well."""
    client = connect(server.url, "test", FAST)
    client.ping()
    server.pause()
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - t0 < FAST.socket_timeout_s + 0.5
    server.resume()
    assert client.ping()


def test_stop_works_on_a_paused_server_and_twice(server: RedisServer) -> None:
    server.pause()
    server.stop(timeout_s=5)
    assert not server.running()
    server.stop()  # nothing to do


def test_taken_port_fails_loudly(server: RedisServer, tmp_path: Path) -> None:
    """A second server on the same port exits at once, and start() says where to look."""
    clash = RedisServer(tmp_path / "clash", port=server.port)
    with pytest.raises(RuntimeError, match=r"server\.log"):
        clash.start(timeout_s=5)


def test_ensure_server_reuses_the_one_answering(tmp_path: Path) -> None:
    """ensure_server starts a server for a data dir once; the next call finds it running
    on its unix socket and reuses it instead of starting another."""
    first = ensure_server(tmp_path / "data")
    try:
        assert first.running() and first.url.startswith("unix://")
        second = ensure_server(tmp_path / "data")
        assert second.proc is None and second.url == first.url
        Queue(connect(second.url, "t"), "q").put(b"x")
        assert Queue(connect(first.url, "t"), "q").depth() == 1
    finally:
        first.stop()


def test_free_ports_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    """A port from bind(0) is an ephemeral port, which any outgoing connection may take as its
    local port before the server binds it (a cluster node once failed so): free_port picks
    below that range, and never hands the same port out twice."""
    from redisq.backend.embedded import _ephemeral_low, free_port

    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= p < _ephemeral_low() for p in ports)
