"""How connect() configures clients (nothing is dialled here: redis-py connects lazily)."""

from __future__ import annotations

import socket
from typing import Any

import fakeredis
import pytest
import redis

from redisq.backend import connection
from redisq.backend.connection import ConnectionOptions, client_name, connect, resolve_url, wait_for_redis
from redisq.errors import ConfigError

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.25, connect_timeout_s=0.3)


def test_read_deadline_exceeds_the_longest_block() -> None:
    """The socket timeout is block + margin, so a live server always answers a block first."""
    assert FAST.socket_timeout_s == pytest.approx(0.75)
    kwargs = connect("redis://127.0.0.1:1/0", "t", FAST).connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == pytest.approx(0.75)
    assert kwargs["socket_connect_timeout"] == pytest.approx(0.3)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "unix:///tmp/nowhere.sock",
                                 "rediss://127.0.0.1:1/0"])
def test_no_hidden_retries(url: str) -> None:
    """redis-py must not repeat a command on its own: a repeated blocking move after a lost
    reply could take a second message (or, in older versions, drop one)."""
    client = connect(url, "t", FAST)
    assert client.get_retry().get_retries() == 0  # type: ignore[union-attr]
    conn: Any = client.connection_pool.make_connection()
    assert conn.retry.get_retries() == 0
    assert conn.retry_on_timeout is False
    assert client.connection_pool.connection_kwargs["health_check_interval"] == 0


def test_tcp_connections_use_short_keepalive() -> None:
    kwargs = connect("redis://127.0.0.1:1/0", "t", FAST).connection_pool.connection_kwargs
    assert kwargs["socket_keepalive"] is True
    opts = kwargs["socket_keepalive_options"]
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert opts[socket.TCP_KEEPIDLE] == FAST.keepalive_idle_s
        assert opts[socket.TCP_KEEPCNT] == FAST.keepalive_count


def test_every_connection_is_named_after_its_role() -> None:
    name = client_name("worker")
    assert name.startswith("redisq:worker:") and " " not in name
    conn: Any = connect("redis://127.0.0.1:1/0", "worker").connection_pool.make_connection()
    assert conn.client_name == name


def test_tls_options_come_from_the_url_query() -> None:
    client = connect("rediss://127.0.0.1:1/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem", "t")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["ssl_ca_certs"] == "/ca.pem"


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported"):
        connect("http://127.0.0.1:1/", "t")


def test_sentinel_url_needs_a_master_name() -> None:
    with pytest.raises(ConfigError, match="master name"):
        connect("redis+sentinel://127.0.0.1:1", "t")


def test_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit URL wins over $REDIS_URL (more in tests/unit/test_urls.py)."""
    monkeypatch.delenv("REDISQ_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://from-env:1/0")
    assert resolve_url("redis://explicit:1/0") == "redis://explicit:1/0"
    assert resolve_url(None) == "redis://from-env:1/0"


def test_wait_for_redis_gives_up_with_the_last_error() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    client = fakeredis.FakeRedis(server=server)
    with pytest.raises(redis.ConnectionError):
        wait_for_redis(client, 0.05)
    server.connected = True
    wait_for_redis(client, 0.05)


def test_connection_errors_cover_timeouts_and_os_errors() -> None:
    for exc in (redis.ConnectionError(), redis.TimeoutError(), ConnectionResetError(),
                TimeoutError()):
        assert isinstance(exc, connection.CONNECTION_ERRORS)


def test_use_url_drops_a_client_made_for_another_url() -> None:
    """--url / REDIS_URL win over the App's own URL even once the App has connected (the
    module used it on import, or it was loaded before in this process)."""
    from redisq import App

    app = App("redis://127.0.0.1:1/0")
    old = app.client
    app.use_url("redis://127.0.0.1:2/0")
    assert app.client is not old
    assert app.client.connection_pool.connection_kwargs["port"] == 2
    same = app.client
    app.use_url("redis://127.0.0.1:2/0")  # the same URL: the client stays
    assert app.client is same


def test_app_client_is_made_once_when_threads_ask_at_once() -> None:
    """Job threads (or web request threads) that use a fresh App's client at the same moment
    must get one client. Two made at once: the one stored second replaces the first, whose
    ``Redis.__del__`` closes its pool, in-use connections included, under the thread that is
    using it ("Connection closed by server" / EBADF mid-command: the supervisor-child flake)."""
    import threading

    from redisq import App

    app = App("redis://127.0.0.1:1/0")
    made: list[redis.Redis] = []
    got: dict[str, redis.Redis] = {}
    others: list[threading.Thread] = []

    def factory(role: str) -> redis.Redis:
        made.append(redis.Redis(port=1))  # (lazy: nothing is dialled)
        if len(made) == 1:
            # While the first client is being made, a second thread asks for one. Unlocked,
            # it makes its own at once; locked, it waits for the first (the join times out).
            other = threading.Thread(target=lambda: got.update(other=app.client))
            others.append(other)
            other.start()
            other.join(0.3)
        return made[-1]

    app.use_client_factory(factory)
    got["first"] = app.client
    others[0].join(5)
    assert len(made) == 1
    assert got["other"] is got["first"] is app.client
