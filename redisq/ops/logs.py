"""Log set-up for the daemons: ``text`` lines or one JSON object per line (``--log-format``).

A worker logs one INFO line per finished job, so a line's cost is on the per-job path: the
daemons turn off what no redisq line format shows (the caller's file and line, which walks the
stack for every record; thread, process and asyncio task names); the text format renders its
timestamp once per second and the line with one f-string (``logging.Formatter.format`` goes
through the record's ``__dict__``: 23k instructions a line, against 10k). Lines below WARNING
are written in batches (:class:`BatchingHandler`): a write per line is a system call that lets
go of the GIL, and with 8 job threads the writing thread then waits for it back, up to the
switch interval. Nor does a line take the handler's lock: when its holder was switched out
mid-line (a forced GIL switch), every job thread that reached its own line waited for the
holder to get the GIL back, milliseconds (issue 17: the light-task drain at INFO was ~0.77 of
the one at WARNING; see ``bench/log_cost.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TextIO

#: Lines below WARNING wait at most this long to be written (or until BATCH_LINES are waiting).
FLUSH_EVERY_S = 0.05
BATCH_LINES = 256

TEXT_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # a timestamp's tail, made once


class TextFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.123Z level=INFO logger=... message``, UTC; the seconds part of
    the timestamp is formatted once per second."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        # (second, its text) in one tuple: threads format at once (no handler lock), and a
        # thread must never pair one second with another's text.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)  # the traceback's lines after the line
        record.message = message = record.getMessage()
        record.asctime = asctime = self.formatTime(record)
        return f"{asctime} level={record.levelname} logger={record.name} {message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        try:
            return cached[1] + _MILLIS[int(record.msecs)]
        except IndexError:  # a record made by hand
            return f"{cached[1]}.{int(record.msecs):03d}Z"


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
    the last :data:`FLUSH_EVERY_S` of INFO lines.

    A line is formatted in the caller's thread and appended to a deque without the handler's
    lock (see the module docstring); lines are written in the order they were appended."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: deque[str] = deque()  # append and popleft are atomic: no lock
        # Held by whoever writes, from taking the lines to the end of the write (so batches
        # leave in order), and across a fork (no write is half done in the child).
        self._io = threading.Lock()
        self._flusher_pid = 0  # the process whose flusher thread runs (0: none yet)
        self._starting = threading.Lock()
        self._wake = threading.Event()  # BATCH_LINES wait: the flusher writes them now
        _HANDLERS.add(self)

    def handle(self, record: logging.LogRecord) -> bool:
        """``logging.Handler.handle`` without the handler's lock (:meth:`emit` needs none)."""
        passed: object = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = passed
        if passed:
            self.emit(record)
        return bool(passed)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        if record.levelno >= logging.WARNING:
            self._write()
        elif len(self._pending) >= BATCH_LINES:
            # The flusher writes them: a job thread that wrote would wait for the GIL after
            # the system call, up to the switch interval.
            if not self._wake.is_set():
                self._wake.set()
        elif not self._flusher_pid:
            self._start_flusher()

    def flush(self) -> None:
        self._write()

    def close(self) -> None:
        self.flush()
        self._flusher_pid = -1  # the flusher thread ends
        self._wake.set()
        super().close()

    def _write(self) -> None:
        """Write what waits, as one batch (what waited when it was called is written when it
        returns, by this thread or the one writing before it)."""
        self._io.acquire()
        try:
            lines = []
            take = self._pending.popleft
            with contextlib.suppress(IndexError):
                while True:
                    lines.append(take())
            if lines:
                self.stream.write("".join(lines))
                self.stream.flush()
        except Exception:  # a closed or broken stream: not fatal, as in StreamHandler
            self.handleError(logging.makeLogRecord({"msg": "(batched log lines)"}))
        finally:
            self._io.release()

    def _start_flusher(self) -> None:
        with self._starting:  # the first lines may come from several threads at once
            if not self._flusher_pid:
                self._flusher_pid = os.getpid()
                threading.Thread(target=self._flush_forever, daemon=True,
                                 name="redisq-log-flush").start()

    def _flush_forever(self) -> None:
        while self._flusher_pid == os.getpid():
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            if self._pending:
                self._write()

    def _before_fork(self) -> None:
        self._io.acquire()

    def _after_fork_parent(self) -> None:
        self._io.release()

    def _after_fork_child(self) -> None:
        self._io = threading.Lock()
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._pending = deque()  # the parent's lines: the parent writes them
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
    if sys.version_info >= (3, 12):  # the asyncio task's name: a look-up per line
        logging.logAsyncioTasks = False
