"""TLS servers for the TLS tests, whatever server binary the suite runs on.

redisq's TLS code is client-side (``rediss://`` URLs: CA checks, hostname checks, the options
reaching every connection); the tests need a peer that speaks TLS with a given certificate.
A binary built with TLS (Debian's redis-server) serves it natively. One built without it (the
``embedded`` extra's Valkey: "Failed finding TLS support") serves plain TCP behind
:class:`TLSFront`, a small TLS terminator in this process that presents the same certificate:
the client's side of every test is unchanged, so no TLS test is skipped on such a machine.
``pytest``'s header says which is in use (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from redisq.backend.embedded import RedisServer, find_server_binary, free_port

_POLL_S = 0.05
_TLS_RECORD = 0x16  # the first byte of a TLS handshake record (a ClientHello)


@functools.cache
def has_native_tls(binary: str | None = None) -> bool:
    """Whether the server binary was built with TLS: asked to listen with TLS on a missing
    certificate, a TLS build gets as far as configuring TLS (and fails there); a build without
    TLS says it has none. Anything else counts as no TLS (the front always works)."""
    out = subprocess.run([binary or find_server_binary(), "--port", "0", "--tls-port",
                          str(free_port()), "--tls-cert-file", "/nonexistent.pem",
                          "--tls-key-file", "/nonexistent.key", "--logfile", ""],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    return "Failed to configure TLS" in out or "certificate" in out.lower()


def server_description() -> str:
    binary = find_server_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()
    tls = ("native TLS" if has_native_tls(binary) else
           "no TLS in this binary: the TLS tests run through tests/support/tls.py's TLS front")
    return f"{binary} ({version}); {tls}"


class TLSFront:
    """Listens on 127.0.0.1:``port``; each connection that opens with a TLS handshake is
    served over TLS with ``cert``/``key`` and forwarded as plain bytes to ``target_port``.
    ``plain_too``: a connection that opens with anything else is forwarded as it is (a
    sentinel that talks to the master in plain text, on the port clients reach over TLS)."""

    def __init__(self, target_port: int, cert: Path, key: Path, port: int | None = None,
                 plain_too: bool = False) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.plain_too = plain_too
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(str(cert), str(key))
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(_POLL_S)
        self._closed = threading.Event()
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True, name="tls-front").start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="tls-front-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        client: socket.socket = conn
        try:
            conn.settimeout(5)
            first = conn.recv(1, socket.MSG_PEEK)
            if first and first[0] == _TLS_RECORD:
                client = self._ctx.wrap_socket(conn, server_side=True)
            elif not self.plain_too:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            with self._lock:
                self._socks.update((client, upstream))
            self._pump(client, upstream)
        except (OSError, ssl.SSLError):
            pass  # a refused handshake (the tests' wrong CA, wrong host) ends here
        finally:
            for s in (client, upstream):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
                    with self._lock:
                        self._socks.discard(s)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Both directions in one thread (an SSL socket must not be read and written from two
        threads at once); decrypted bytes OpenSSL already holds are read before waiting."""
        while not self._closed.is_set():
            ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready = select.select([a, b], [], [], _POLL_S)[0]
            for s in ready:
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:  # a partial record: wait for the rest
                    continue
                if not data:
                    return
                (b if s is a else a).sendall(data)


@contextlib.contextmanager
def tls_redis(data_dir: Path, certs: Path, cert: str, ca: str = "good",
              tls_port: int | None = None) -> Iterator[int]:
    """A server that clients reach over TLS on the port yielded, presenting ``<cert>.pem``:
    native TLS when the binary has it, else a plain server behind a :class:`TLSFront`."""
    port = tls_port or free_port()
    if has_native_tls():
        srv = RedisServer(data_dir, port=free_port(), extra_args=(
            "--tls-port", str(port), "--tls-cert-file", str(certs / f"{cert}.pem"),
            "--tls-key-file", str(certs / f"{cert}.key"), "--tls-ca-cert-file",
            str(certs / f"{ca}-ca.pem"), "--tls-auth-clients", "no")).start()
        try:
            yield port
        finally:
            srv.kill()
        return
    srv = RedisServer(data_dir, port=free_port()).start()
    front = TLSFront(srv.port or 0, certs / f"{cert}.pem", certs / f"{cert}.key", port)
    try:
        yield port
    finally:
        front.close()
        srv.kill()
