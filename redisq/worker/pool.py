"""The worker's thread pool: fixed daemon threads fed through one queue."""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("redisq.worker")

#: The longest a hand-over waits for a pool thread to begin (all busy: it begins later).
HAND_OVER_S = 0.002


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

    def hand_over(self, fn: Callable[[], None], timeout_s: float = HAND_OVER_S) -> bool:
        """Submit ``fn`` and wait (up to ``timeout_s``) until a pool thread has begun it;
        returns whether one did. The caller gives up the GIL while it waits: a pool thread
        woken by :meth:`submit` otherwise waits for it until the caller's next system call
        (~0.1 ms of Python on the worker loop), and that wait is on the job's start latency."""
        begun = threading.Event()

        def run() -> None:
            begun.set()
            fn()

        self.submit(run)
        return begun.wait(timeout_s)

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
