"""The daemons' log lines: the text format (its cached timestamp must read exactly like the
per-line one it replaced) and the cost switches :func:`redisq.ops.logs.setup` turns."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from redisq.ops import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing)
    yield
    root.handlers[:], root.level = handlers, level
    (logging._srcfile, logging.logThreads, logging.logProcesses,
     logging.logMultiprocessing) = saved


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
    assert isinstance(logging.getLogger().handlers[0].formatter, logs.TextFormatter)
    logs.setup("debug", "json")
    assert isinstance(logging.getLogger().handlers[0].formatter, logs.JSONFormatter)
    assert logging.getLogger().level == logging.DEBUG
