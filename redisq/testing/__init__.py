"""Testing helpers: run what a test queued with a real worker, in-process, until it is done.

>>> app = App(url)                      # a real Redis, or fakeredis (fake_app())
>>> add.delay(2, 3)
>>> run_until_idle(app, queues=["default"])
{'succeeded': 1, 'failed': 0, 'retried': 0, 'dead': 0, ..., 'skipped_delays': 0}

For tests that need no worker at all, see eager mode (``App(eager=True)``, docs/testing.md).
The pytest plugin (:mod:`redisq.testing.plugin`, loaded by the ``pytest11`` entry point) gives
the ``redisq_app`` and ``redisq_worker`` fixtures.
"""

from __future__ import annotations

import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from ..app import App
from ..config import load
from ..model import DEAD, FAILED, RETRYING, SUCCEEDED
from ..worker.prodcons import ProdconsWorker

__all__ = ["WorkerTimeout", "default_queues", "fake_app", "run_until_idle"]


class WorkerTimeout(TimeoutError):
    """:func:`run_until_idle` ran out of time with work left; ``counts`` says what was done."""

    def __init__(self, message: str, counts: dict[str, int]) -> None:
        super().__init__(message)
        self.counts = counts


def default_queues(app: App) -> list[str]:
    """Every queue ``app``'s tasks declare, and ``default``."""
    return sorted({t.options.queue for t in app.tasks.values()} | {"default"})


def run_until_idle(app: App, queues: Sequence[str] | None = None, timeout_s: float = 10.0, *,
                   concurrency: int = 4, fast_forward: bool = True) -> dict[str, int]:
    """Run a real worker (``redisq worker --burst``, in this thread) on ``app``'s Redis until
    nothing is queued, due, waiting to be retried, or running on ``queues`` (default: every
    queue of the app's tasks, and ``default``). Returns what it did: attempts that
    ``succeeded``, ``failed``, were ``retried``, went ``dead`` (and any other status), and
    ``skipped_delays``.

    ``fast_forward`` (default): a retry waiting out its backoff is made due at once (counted
    in ``skipped_delays``) rather than slept through. Jobs the producer delayed (``delay_s``,
    ``eta``) are not waited for; they run if they are already due. Raises
    :class:`WorkerTimeout` when work is left after ``timeout_s`` (the worker stops first:
    running jobs get a short grace, then go back to their queue)."""
    if app.eager:
        raise ValueError("run_until_idle needs a non-eager App (an eager App's jobs are "
                         "finished when delay() returns)")
    names = list(queues) if queues else default_queues(app)
    settings = load({"queues": ",".join(names), "burst": True, "concurrency": concurrency,
                     "block_timeout_s": 0.1, "lease_s": 5.0, "grace_s": 1.0,
                     "worker_id": f"run-until-idle-{uuid.uuid4().hex[:8]}"}, environ={})
    worker = ProdconsWorker(app, settings)
    worker.burst.fast_forward = fast_forward
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        worker.stop()

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    handlers = _signal_handlers()
    switch_interval = sys.getswitchinterval()
    timer.start()
    try:
        worker.run()
    finally:
        timer.cancel()
        # A worker process sets these for itself; the test's process gets its own back.
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(switch_interval)
    counts = _counts(worker)
    if expired.is_set():
        raise WorkerTimeout(f"queues {names} still had work after {timeout_s} s "
                            f"(done so far: {counts})", counts)
    return counts


def _signal_handlers() -> dict[signal.Signals, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _counts(worker: ProdconsWorker) -> dict[str, int]:
    done = dict(worker.outcomes)
    counts = {"succeeded": done.pop(SUCCEEDED, 0), "failed": done.pop(FAILED, 0),
              "retried": done.pop(RETRYING, 0), "dead": done.pop(DEAD, 0)}
    counts.update(sorted(done.items()))
    counts["skipped_delays"] = worker.burst.skipped_delays
    return counts


def fake_app(app: App | None = None, server: Any = None) -> App:
    """``app`` (default: a new App) on a fakeredis server (``server``, default a new one):
    its producer and the workers :func:`run_until_idle` starts share it. Needs the
    ``fakeredis[lua]`` package (``pip install 'redisq[testing]'``)."""
    import fakeredis

    app = app or App("redis://fakeredis.invalid:6379/0")
    shared = server or fakeredis.FakeServer()

    def factory(role: str) -> redis.Redis:
        return fakeredis.FakeRedis(server=shared)

    app.use_client_factory(factory)
    return app
