"""The daemons' log lines: the text format (its cached timestamp must read exactly like the
per-line one it replaced) and the cost switches :func:`redisq.ops.logs.setup` turns."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from redisq.ops import logs
from tests.support.wait import wait_until


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing, getattr(logging, "logAsyncioTasks", True))
    yield
    root.handlers[:], root.level = handlers, level
    (logging._srcfile, logging.logThreads, logging.logProcesses,
     logging.logMultiprocessing, logging.logAsyncioTasks) = saved


def record(created: float) -> logging.LogRecord:
    rec = logging.LogRecord("redisq.worker", logging.INFO, __file__, 1,
                            "job=%s task=%s queue=%s succeeded duration_s=%.6f",
                            ("j1", "t.add", "default", 0.001), None)
    rec.created, rec.msecs = created, (created - int(created)) * 1000
    return rec


def test_text_lines_read_as_before() -> None:
    old = logging.Formatter("%(asctime)s.%(msecs)03dZ level=%(levelname)s "
                            "logger=%(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    old.converter = time.gmtime
    fmt = logs.TextFormatter()
    # Within one second, across seconds, and back (records may arrive out of order).
    for created in (1_764_770_000.0, 1_764_770_000.999, 1_764_770_001.5, 1_764_770_000.25,
                    1_800_000_000.0625):
        assert fmt.format(record(created)) == old.format(record(created))
    assert fmt.format(record(1_764_770_000.5)).startswith("2025-12-03T13:53:20.500Z level=INFO")


def test_setup_turns_off_what_no_line_shows(restore_logging: None) -> None:
    logs.setup("INFO", "text")
    assert logging._srcfile is None and not logging.logThreads
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logs.BatchingHandler)
    assert isinstance(handler.formatter, logs.TextFormatter)
    logs.setup("debug", "json")
    assert isinstance(logging.getLogger().handlers[0].formatter, logs.JSONFormatter)
    assert logging.getLogger().level == logging.DEBUG


class Stream(io.StringIO):
    """Counts the writes (each one a system call on a real stream)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def handler_on(stream: Stream) -> tuple[logging.Logger, logs.BatchingHandler]:
    handler = logs.BatchingHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batching.{id(stream)}")
    logger.propagate, logger.handlers[:] = False, [handler]
    logger.setLevel(logging.DEBUG)
    return logger, handler


def test_info_lines_are_batched_and_a_warning_writes_at_once() -> None:
    stream = Stream()
    logger, handler = handler_on(stream)
    for i in range(50):
        logger.info("job=%d succeeded", i)
    logger.warning("job=50 failed")  # at once, after every line before it, in order
    lines = stream.getvalue().splitlines()
    assert lines == [f"INFO job={i} succeeded" for i in range(50)] + ["WARNING job=50 failed"]
    assert stream.writes <= 2  # one batch (the flusher may have taken a first part)
    logger.info("job=51 succeeded")  # written by the flusher within FLUSH_EVERY_S
    wait_until(lambda: stream.getvalue().endswith("INFO job=51 succeeded\n"), 2,
               what="the flusher")
    logger.info("job=52 succeeded")
    handler.flush()  # logging.shutdown at exit, the supervisor before a fork
    assert stream.getvalue().endswith("INFO job=52 succeeded\n")


def test_many_threads_lose_and_reorder_nothing() -> None:
    stream = Stream()
    logger, handler = handler_on(stream)

    def work(t: int) -> None:
        for i in range(500):
            (logger.warning if i % 97 == 0 else logger.info)("t=%d i=%d", t, i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4000
    for t in range(8):
        mine = [int(x.rsplit("=", 1)[1]) for x in lines if f" t={t} " in x]
        assert mine == list(range(500))
    assert stream.writes < 4000 / 4  # batched: far fewer writes than lines


def test_a_line_does_not_wait_for_the_handlers_lock() -> None:
    """Job threads log without the handler's lock: 8 threads queueing on it cost two thread
    switches per line whenever its holder was switched out (issue 17)."""
    stream = Stream()
    logger, handler = handler_on(stream)
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with handler.lock:  # type: ignore[union-attr]
            holding.set()
            done.wait(5)

    def log_two() -> None:
        logger.info("job=1 succeeded")
        logger.warning("job=2 failed")  # written at once, lock or not

    holder, job_thread = threading.Thread(target=hold), threading.Thread(target=log_two)
    holder.start()
    try:
        assert holding.wait(5)
        job_thread.start()
        job_thread.join(2)
        assert not job_thread.is_alive(), "the line waited for the handler's lock"
        assert stream.getvalue() == "INFO job=1 succeeded\nWARNING job=2 failed\n"
    finally:
        done.set()
        holder.join()
        job_thread.join()


def test_shutdown_writes_what_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "FLUSH_EVERY_S", 60.0)  # the flusher would not come in time
    stream = Stream()
    logger, handler = handler_on(stream)
    for i in range(10):
        logger.info("job=%d succeeded", i)
    assert stream.getvalue() == ""
    logging.shutdown([weakref.ref(handler)])  # what atexit runs after SIGTERM's clean stop
    assert stream.getvalue().splitlines() == [f"INFO job={i} succeeded" for i in range(10)]


def test_text_lines_with_a_traceback() -> None:
    try:
        raise ValueError("no")
    except ValueError:
        rec = logging.LogRecord("redisq.worker", logging.ERROR, __file__, 1, "job=%s crashed",
                                ("j1",), sys.exc_info())
    rec.created, rec.msecs = 1_764_770_000.5, 500.0
    first, *rest = logs.TextFormatter().format(rec).splitlines()
    assert first == "2025-12-03T13:53:20.500Z level=ERROR logger=redisq.worker job=j1 crashed"
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: no"
