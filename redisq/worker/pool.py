"""The worker's thread pool: fixed daemon threads fed through one queue."""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("redisq.worker")


class Pool:
    """Fixed daemon threads (so a job stuck in C code cannot keep the process from exiting)."""

    def __init__(self, size: int, name: str) -> None:
        self._inbox: stdqueue.SimpleQueue[Callable[[], None] | None] = stdqueue.SimpleQueue()
        self._name = name
        self._retired: set[int] = set()  # threads that end after their current work
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"{name}-{i}")
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def replace(self, thread_id: int) -> None:
        """Start a thread in place of ``thread_id``, which is stuck in its current work (an
        abandoned job): it ends once that work returns, instead of taking more."""
        self._retired.add(thread_id)
        t = threading.Thread(target=self._work, daemon=True,
                             name=f"{self._name}-{len(self._threads)}")
        self._threads = [*(x for x in self._threads if x.ident != thread_id), t]
        t.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._inbox.put(fn)

    def _work(self) -> None:
        me = threading.get_ident()
        while me not in self._retired and (fn := self._inbox.get()) is not None:
            try:
                fn()
            except BaseException:  # a dead pool thread would shrink the pool for good
                log.exception("%s: unexpected error", threading.current_thread().name)
        self._retired.discard(me)

    def close(self) -> None:
        """Let the threads end once the work already submitted is done."""
        for _ in self._threads:
            self._inbox.put(None)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the threads to end (after :meth:`close`); returns
        whether they all did."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        return not any(t.is_alive() for t in self._threads)


__all__ = ["Pool"]
