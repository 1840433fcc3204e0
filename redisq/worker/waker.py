"""Promote delayed jobs at the moment a throttled job's slot comes.

Delayed jobs are promoted by every worker every 0.5 s; a job a rate limit sent back with its
own start slot would start up to that much late, and starts would come in bunches. A worker
that throttled a job therefore also promotes its queue when that job is due: one thread, a
heap of due times, and one ``promote_due`` step per wake (which moves whatever is due, others'
jobs too). The thread ends when nothing is left to wake for, and starts again with the next.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from ..backend.connection import CONNECTION_OR_REPLY_ERRORS

log = logging.getLogger("redisq.worker")

#: Wake a little after the due time: the slot is on Redis's clock, ours read it a reply later.
MARGIN_S = 0.002


class Waker:
    def __init__(self, promote: Callable[[str], object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.promote = promote
        self.clock = clock
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def at(self, queue: str, in_s: float) -> None:
        """Promote ``queue``'s due delayed jobs ``in_s`` seconds from now."""
        with self._cond:
            heapq.heappush(self._heap, (self.clock() + in_s + MARGIN_S, queue))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="redisq-waker")
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][0] > self.clock():
                    self._cond.wait(self._heap[0][0] - self.clock())
                if not self._heap:
                    self._thread = None
                    return
                now = self.clock()
                queues = set()
                while self._heap and self._heap[0][0] <= now:
                    queues.add(heapq.heappop(self._heap)[1])
            for q in queues:
                try:
                    self.promote(q)
                except CONNECTION_OR_REPLY_ERRORS as exc:  # the periodic promotion catches up
                    log.debug("could not promote queue %s: %s", q, exc)


__all__ = ["Waker"]
