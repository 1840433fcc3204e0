"""Workers run in a thread of the test process (faster than subprocesses; no signals)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from redisq import App, config
from redisq.worker.daemon import Daemon
from redisq.worker.prodcons import Worker
from redisq.worker.pubsub import PubSubWorker

FAST = {"block_timeout_s": 0.3, "lease_s": 1.5, "concurrency": 4, "grace_s": 2}


@contextlib.contextmanager
def running(app: App, kind: type[Daemon] = Worker,
            before_start: Callable[[Any], None] | None = None,
            **overrides: object) -> Iterator[Any]:
    """A started worker of ``kind`` with test-fast timings; stopped (and joined) on exit.
    ``before_start(worker)`` may patch the worker between construction and its first loop."""
    settings = config.load({**FAST, **overrides}, {})
    worker = kind(app, settings)
    if before_start is not None:
        before_start(worker)
    thread = threading.Thread(target=worker.run, daemon=True, name="test-worker")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(5)
        assert not thread.is_alive(), "the worker did not stop"


__all__ = ["FAST", "PubSubWorker", "Worker", "running"]
