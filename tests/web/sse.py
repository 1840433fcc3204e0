"""A tiny Server-Sent Events client for the tests: a raw socket (so a test can vanish like a
closed browser tab) and a reader thread that parses events into a queue."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from typing import Any
from urllib.parse import urlparse


class SSEClient:
    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        url = urlparse(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=10)
        # HTTP/1.0: the server streams the body as is (no chunked framing) and closes at the end.
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {url.netloc}\r\n{extra}"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.events: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.comments = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            stream = self.sock.makefile("rb")
            self.status = int(stream.readline().split()[1])
            for raw in iter(stream.readline, b"\r\n"):
                name, _, value = raw.decode().partition(":")
                self.headers[name.strip().lower()] = value.strip()
            event, data = "message", []
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    self.events.put((event, "\n".join(data)))
                    event, data = "message", []
        except OSError:
            pass
        finally:
            self.events.put(None)  # end of stream

    def next(self, kind: str, timeout_s: float = 5.0, where: Any = None) -> Any:
        """The data (parsed JSON) of the next ``kind`` event for which ``where(data)`` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                item = self.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no {kind!r} event within {timeout_s} s") from None
            if item is None:
                raise AssertionError(f"the stream ended before a {kind!r} event")
            event, data = item
            if event == kind:
                value = json.loads(data)
                if where is None or where(value):
                    return value

    def ended(self, timeout_s: float) -> bool:
        """Whether the server ended the stream within ``timeout_s``."""
        self._reader.join(timeout_s)
        return not self._reader.is_alive()

    def close(self) -> None:
        """Go away like a closed tab: the connection is gone, nothing more is said."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
