"""systemd's notify protocol: READY=1 once Redis answers, WATCHDOG=1 while the main loop
progresses (and not when it hangs), STOPPING=1 on the way out."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redisq import App, config
from redisq.backend.embedded import RedisServer
from redisq.worker.notify import Notifier
from redisq.worker.prodcons import Worker
from tests.support.procs import start_worker, stop


class NotifySocket:
    """The datagram socket systemd would listen on."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="rq-notify-")  # AF_UNIX paths must stay short
        self.path = str(Path(self._dir) / "n.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)

    def received(self, window_s: float) -> list[str]:
        """Every datagram that arrives within ``window_s``."""
        out, end = [], time.monotonic() + window_s
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                out.append(self.sock.recv(256).decode())
        return out

    def wait_for(self, state: str, timeout_s: float) -> list[str]:
        """Datagrams up to and including the first ``state``; fails after ``timeout_s``."""
        out, end = [], time.monotonic() + timeout_s
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                out.append(self.sock.recv(256).decode())
                if out[-1] == state:
                    return out
        raise AssertionError(f"no {state} within {timeout_s} s (got {out})")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def wait_for_output(proc: subprocess.Popen[bytes], text: str, timeout_s: float) -> None:
    """Read the process's stderr until a line contains ``text``."""
    assert proc.stderr is not None
    seen, end = b"", time.monotonic() + timeout_s
    while text.encode() not in seen:
        left = end - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            raise AssertionError(f"no {text!r} from the worker within {timeout_s} s: {seen!r}")
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"the worker exited before saying {text!r}: {seen!r}")
        seen += chunk


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_ready_only_once_redis_answers_then_watchdog_then_stopping(
        server: RedisServer, notify: NotifySocket) -> None:
    server.stop()  # the worker starts while Redis is down
    worker = start_worker(server.url, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000")
    try:
        assert notify.received(0.8) == []  # not ready: Redis does not answer yet
        server.start()
        notify.wait_for("READY=1", 5)
        for _ in range(3):  # WATCHDOG_USEC / 2 apart, and nothing else meanwhile
            assert notify.wait_for("WATCHDOG=1", 2) == ["WATCHDOG=1"]
        worker.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", 5)
        assert worker.wait(5) == 0
    finally:
        stop(worker)


def test_sigterm_while_waiting_for_redis_is_a_clean_exit(server: RedisServer,
                                                         notify: NotifySocket) -> None:
    server.stop()
    worker = start_worker(server.url, NOTIFY_SOCKET=notify.path)
    try:
        wait_for_output(worker, "connection lost", 8)  # up, with its signal handlers, waiting
        assert notify.received(0.1) == []
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(5) == 0
        assert "READY=1" not in notify.received(0.1)
    finally:
        stop(worker)


def test_watchdog_stops_while_the_main_loop_hangs(redis_url: str, notify: NotifySocket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A debugging seam only: the loop is made to hang by patching ``iterate``, and time is
    moved on through the worker's injectable clock, so the real progress bound is used."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    offset = [0.0]
    app = App(redis_url)
    settings = config.load({"block_timeout_s": 0.2, "lease_s": 1.5}, {})
    worker = Worker(app, settings, notifier=Notifier(notify.path),
                    clock=lambda: time.monotonic() + offset[0])
    hang, hanging = threading.Event(), threading.Event()
    real_iterate = worker.iterate

    def iterate() -> None:
        while hang.is_set():
            hanging.set()
            time.sleep(0.02)  # a stuck loop: no iteration completes
        real_iterate()

    worker.iterate = iterate  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert notify.wait_for("READY=1", 5) == ["READY=1"]
        notify.wait_for("WATCHDOG=1", 2)
        notify.wait_for("WATCHDOG=1", 2)
        hang.set()
        assert hanging.wait(2)
        offset[0] += 60.0  # a minute later, the loop has still not come back
        notify.received(0.3)  # (a ping may have been on its way)
        assert "WATCHDOG=1" not in notify.received(0.8)
        hang.clear()
        notify.wait_for("WATCHDOG=1", 3)  # the loop is back: so is the watchdog
    finally:
        hang.clear()
        worker.stop()
        thread.join(5)
        app.close()
