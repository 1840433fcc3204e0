"""A TCP fault proxy on 127.0.0.1 between the code under test and a real server.

Modes (set ``proxy.mode``; new connections follow the mode current when they arrive):

``pass``
    forward bytes both ways.
``blackhole``
    keep both sockets open and drop every byte in both directions: a NAT or firewall that
    silently forgot the flow, so the client sees a half-open connection (no error, no reply).
    Blackholing is sticky per connection, as a forgotten NAT flow is: a connection that was
    blackholed never carries bytes again, even after ``mode = "pass"`` (resuming it would hand
    the peers a byte stream with a hole in it, which no real network does). Only new
    connections pass again.
``reset``
    close every current connection with a RST (``SO_LINGER`` 0) on entering the mode, and
    reset new ones as soon as they are accepted.
``refuse``
    close new connections at once (the client sees the server hang up); connections already
    established keep forwarding.

:meth:`reset_all` resets the current connections without changing the mode.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "blackhole", "reset", "refuse"]
MODES: tuple[Mode, ...] = ("pass", "blackhole", "reset", "refuse")
_POLL_S = 0.02  # how often idle threads look at the mode and the closed flag


def _rst_close(sock: socket.socket) -> None:
    """Close ``sock`` with a RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One proxied connection: the client's socket and ours to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket, dead: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.dead = dead  # blackholed: drops every byte until closed
        self.forwarded = 0  # bytes passed through, both directions


class FaultProxy:
    """``with FaultProxy(target_port) as p: connect to p.port; p.mode = "blackhole"``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._mode: Mode = "pass"
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(_POLL_S)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0  # connections taken and linked to the target
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, name="proxy-accept",
                                          daemon=True)

    # -- control -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A redis:// URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; one of {MODES}")
        with self._lock:
            self._mode = mode
            if mode == "blackhole":
                for link in self._links:
                    link.dead = True
        if mode == "reset":
            self.reset_all()

    def connections(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            return len(self._links)

    def reset_all(self) -> int:
        """Close every current connection with a RST; returns how many were reset."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            _rst_close(link.client)
            _rst_close(link.upstream)
        return len(links)

    def start(self) -> FaultProxy:
        self._accepter.start()
        return self

    def close(self) -> None:
        """Stop accepting, reset every connection and wait for the proxy's threads."""
        self._closed.set()
        if self._accepter.is_alive():
            self._accepter.join(2)
        self._listener.close()
        self.reset_all()
        for t in list(self._threads):
            t.join(2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work --------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            mode = self._mode
            if mode == "refuse":
                client.close()
                continue
            if mode == "reset":
                _rst_close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # the target is down: hang up, as it would
                continue
            upstream.settimeout(None)
            with self._lock:  # the mode may have changed while we connected: re-read it
                self.accepted += 1
                if self._mode == "reset":
                    _rst_close(client)
                    _rst_close(upstream)
                    continue
                link = _Link(client, upstream, dead=self._mode == "blackhole")
                self._links.append(link)
            t = threading.Thread(target=self._pump, args=(link,), name="proxy-pump", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _pump(self, link: _Link) -> None:
        peers = {link.client: link.upstream, link.upstream: link.client}
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select(list(peers), [], [], _POLL_S)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return  # one side hung up: hang up the other (finally)
                    if not link.dead:
                        peers[s].sendall(data)
                        link.forwarded += len(data)
        except (OSError, ValueError):
            pass  # reset by reset_all (closed fd) or by a peer
        finally:
            with self._lock:
                if link in self._links:
                    self._links.remove(link)
            for s in (link.client, link.upstream):
                with contextlib.suppress(OSError):
                    s.close()
