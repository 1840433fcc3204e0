"""Log set-up for the daemons: ``text`` lines or one JSON object per line (``--log-format``).

A worker logs one INFO line per finished job, so a line's cost is on the per-job path: the
daemons turn off what no redisq line format shows (the caller's file and line, which walks the
stack for every record; thread and process names) and the text format renders its timestamp
once per second, not per line (a line: ~9 µs to ~5 µs). And lines below WARNING are written in
batches (:class:`BatchingHandler`): a write per line is a system call that lets go of the GIL,
and with 8 job threads the writing thread then waits for it back, up to the switch interval.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TextIO

#: Lines below WARNING wait at most this long to be written (or until BATCH_LINES are waiting).
FLUSH_EVERY_S = 0.05
BATCH_LINES = 256

TEXT_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class TextFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.123Z level=INFO logger=... message``, UTC; the seconds part of
    the timestamp is formatted once per second."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # (two threads racing here both write the same string)
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int(record.msecs):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line; ``key=value`` pairs of the message become fields too."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        for token in message.split():
            key, sep, value = token.partition("=")
            if sep and key.isidentifier() and key not in out:
                out[key] = value.rstrip(":,")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes lines below WARNING in batches: at most every
    :data:`FLUSH_EVERY_S` (a daemon thread), or once :data:`BATCH_LINES` wait. A WARNING or
    worse is written at once, with everything before it, so what matters is never late and
    the order is kept. :meth:`flush` (called by ``logging.shutdown`` at exit, and by the
    supervisor before each fork) writes what waits; a process killed outright loses at most
    the last :data:`FLUSH_EVERY_S` of INFO lines."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        # Held while a batch is written (taken under the handler's lock, so batches are
        # written in order) and across a fork (no write is half done in the child).
        self._io = threading.Lock()
        self._flusher_pid = 0
        _HANDLERS.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        # (emit runs under the handler's lock: Handler.handle takes it.)
        self._pending.append(line)
        if record.levelno >= logging.WARNING or len(self._pending) >= BATCH_LINES:
            self._write()
        elif self._flusher_pid != os.getpid():  # first line here, or in a forked child
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_forever, daemon=True,
                             name="redisq-log-flush").start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        """Write what waits (the caller holds the handler's lock: it is let go before the
        write, so other threads' lines are not held up by the system call)."""
        lines, self._pending = self._pending, []
        if not lines:
            return
        self._io.acquire()  # before letting the handler's lock go: batches stay in order
        self.release()
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # a closed or broken stream: not fatal, as in StreamHandler
            self.handleError(logging.makeLogRecord({"msg": "(batched log lines)"}))
        finally:
            self._io.release()  # first: a thread holding the handler's lock may wait for it
            self.acquire()

    def _flush_forever(self) -> None:
        while self._flusher_pid == os.getpid():
            time.sleep(FLUSH_EVERY_S)
            if self._pending:
                self.flush()

    def _before_fork(self) -> None:
        self._io.acquire()

    def _after_fork_parent(self) -> None:
        self._io.release()

    def _after_fork_child(self) -> None:
        self._io = threading.Lock()
        self._pending = []  # the parent's lines: the parent writes them
        self._flusher_pid = 0  # the flusher thread did not survive the fork


_HANDLERS: weakref.WeakSet[BatchingHandler] = weakref.WeakSet()


def _at_fork(step: str) -> Callable[[], None]:
    def run() -> None:
        for handler in list(_HANDLERS):
            getattr(handler, step)()
    return run


os.register_at_fork(before=_at_fork("_before_fork"),
                    after_in_parent=_at_fork("_after_fork_parent"),
                    after_in_child=_at_fork("_after_fork_child"))


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The logging HOWTO's "Optimization" switches: what no line format here shows is not
    # collected per record (the caller's frame is found by walking the stack).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
