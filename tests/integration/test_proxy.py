"""The fault proxy itself, against a tiny echo server (loopback only)."""

import socket
import threading

import pytest

from tests.support.proxy import FaultProxy


@pytest.fixture
def echo_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(1024):
                conn.sendall(data)
        except OSError:
            pass  # reset by the proxy: expected


def test_pass_then_blackhole_then_reset(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
        proxy.mode = "blackhole"
        s.sendall(b"lost")
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(10)  # half-open: no error, no data
        proxy.reset_all()
        s.settimeout(1)
        with pytest.raises(OSError):
            s.sendall(b"x" * 100)
            assert s.recv(10) == b""
            raise OSError("closed")


def test_refuse_closes_new_connections(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        proxy.mode = "refuse"
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        assert s.recv(10) == b""
