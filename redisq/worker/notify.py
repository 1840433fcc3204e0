"""systemd's notify protocol (sd_notify), without a dependency: READY, WATCHDOG, STOPPING."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("redisq.notify")


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET`` when systemd set it; does nothing otherwise."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get("NOTIFY_SOCKET", "")
        usec = os.environ.get("WATCHDOG_USEC", "")
        #: How often systemd wants WATCHDOG=1 (half its timeout), or None.
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def send(self, state: str) -> bool:
        if not self.path:
            return False
        address = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(state.encode())
            return True
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", state, exc)
            return False

    def ready(self) -> bool:
        return self.send("READY=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")
