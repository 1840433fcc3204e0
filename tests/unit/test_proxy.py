"""The fault proxy itself, between loopback sockets (no Redis): each mode does what the fault
tests rely on."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.proxy import FaultProxy
from tests.support.wait import wait_until


class Upstream:
    """A loopback server whose accepted sockets the test drives by hand."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.02)
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(1.0)
            self.conns.append(conn)

    def nth(self, i: int) -> socket.socket:
        """The i-th connection the proxy made to us (waits for it)."""
        wait_until(lambda: len(self.conns) > i, 2, what=f"upstream connection #{i}")
        return self.conns[i]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.port) as p:
        yield p


def dial(proxy: FaultProxy, timeout_s: float = 1.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)
    return s


def silent(sock: socket.socket, wait_s: float = 0.1) -> bool:
    """True if nothing at all (no data, no EOF, no error) arrives within ``wait_s``."""
    sock.settimeout(wait_s)
    try:
        sock.recv(10)
    except TimeoutError:
        return True
    except OSError:
        return False
    return False


def hung_up(sock: socket.socket) -> bool:
    """True if the peer closed or reset the connection."""
    sock.settimeout(1.0)
    try:
        return sock.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_pass_forwards_both_ways_on_several_connections(proxy: FaultProxy,
                                                        upstream: Upstream) -> None:
    """Bytes flow both ways; each client gets its own upstream connection."""
    a, b = dial(proxy), dial(proxy)
    a.sendall(b"from-a")
    assert upstream.nth(0).recv(10) == b"from-a"
    b.sendall(b"from-b")
    assert upstream.nth(1).recv(10) == b"from-b"
    upstream.nth(1).sendall(b"to-b")
    assert b.recv(10) == b"to-b"
    assert proxy.accepted == 2 and proxy.connections() == 2
    a.close()
    wait_until(lambda: proxy.connections() == 1, 2, what="the closed link to go")
    assert hung_up(upstream.nth(0))  # the client's FIN is passed on as a hang-up
    b.close()


def test_blackhole_drops_both_directions_and_keeps_sockets_open(proxy: FaultProxy,
                                                               upstream: Upstream) -> None:
    """A half-open connection: neither side gets bytes, and neither sees an error."""
    c = dial(proxy)
    c.sendall(b"hello")
    server_side = upstream.nth(0)
    assert server_side.recv(10) == b"hello"
    proxy.mode = "blackhole"
    c.sendall(b"lost-request")
    assert silent(server_side)  # client -> server dropped
    server_side.sendall(b"lost-reply")
    assert silent(c)  # server -> client dropped
    assert proxy.connections() == 1  # still open
    c.close()


def test_blackhole_is_sticky_for_existing_connections(proxy: FaultProxy,
                                                      upstream: Upstream) -> None:
    """A blackholed flow never resumes (no stream with a hole); new connections pass."""
    old = dial(proxy)
    upstream.nth(0)
    proxy.mode = "blackhole"
    during = dial(proxy)  # made during the blackhole: dead from the start
    wait_until(lambda: proxy.accepted == 2, 2, what="the proxy to take the connection")
    proxy.mode = "pass"
    old.sendall(b"x")
    during.sendall(b"y")
    assert silent(upstream.nth(0)) and silent(upstream.nth(1))
    new = dial(proxy)
    new.sendall(b"z")
    assert upstream.nth(2).recv(10) == b"z"
    for s in (old, during, new):
        s.close()


def test_reset_mode_resets_current_and_new_connections(proxy: FaultProxy,
                                                       upstream: Upstream) -> None:
    """Entering ``reset`` sends a RST both ways; connections made meanwhile are reset too."""
    c = dial(proxy)
    server_side = upstream.nth(0)
    proxy.mode = "reset"
    c.settimeout(1.0)
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    assert hung_up(server_side)
    with pytest.raises(ConnectionResetError):  # at connect or at the first read
        late = dial(proxy)
        late.settimeout(1.0)
        try:
            late.recv(10)
        finally:
            late.close()
    assert proxy.connections() == 0 and len(upstream.conns) == 1  # never reached the target
    c.close()


def test_reset_all_keeps_the_mode(proxy: FaultProxy, upstream: Upstream) -> None:
    """reset_all() kills what is open and returns the count; the next connection works."""
    c1, c2 = dial(proxy), dial(proxy)
    wait_until(lambda: proxy.connections() == 2, 2, what="two links")
    assert proxy.reset_all() == 2
    assert hung_up(c1) and hung_up(c2)
    c3 = dial(proxy)
    c3.sendall(b"again")
    assert upstream.nth(2).recv(10) == b"again"
    for s in (c1, c2, c3):
        s.close()


def test_refuse_closes_new_connections_only(proxy: FaultProxy, upstream: Upstream) -> None:
    """``refuse`` hangs up on newcomers while established connections keep working."""
    old = dial(proxy)
    server_side = upstream.nth(0)
    proxy.mode = "refuse"
    new = dial(proxy)
    assert hung_up(new)
    old.sendall(b"still")
    assert server_side.recv(10) == b"still"
    assert len(upstream.conns) == 1
    old.close()
    new.close()


def test_target_down_hangs_up_on_the_client(upstream: Upstream) -> None:
    """With nothing listening behind it, the proxy closes the client's connection."""
    port = upstream.port
    upstream.close()
    with FaultProxy(port) as p:
        c = dial(p)
        assert hung_up(c)
        assert p.accepted == 0
        c.close()


def test_unknown_mode_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown proxy mode"):
        proxy.mode = "drop"  # type: ignore[assignment]


def test_close_stops_listening_and_resets_links(upstream: Upstream) -> None:
    """After close() the port refuses connections and open links are gone."""
    p = FaultProxy(upstream.port).start()
    c = dial(p)
    upstream.nth(0)
    p.close()
    assert hung_up(c)
    with pytest.raises(OSError), contextlib.closing(socket.socket()) as s:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", p.port))
    c.close()
