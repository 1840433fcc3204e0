"""When a burst worker (``redisq worker --burst``) is done: nothing queued, nothing due,
no retry waiting out its delay, nothing running.

A retry waits in the queue's delayed set like a job the producer delayed; only the retry is
work the burst must wait for (a drained queue whose jobs are still being retried is not done),
while a first attempt due tomorrow (``delay_s``, ``eta``) is not. With :attr:`Burst.fast_forward`
(:func:`redisq.testing.run_until_idle`) retries are made due at once instead of waited for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..broker.queue import Queue
from ..model import Envelope

log = logging.getLogger("redisq.worker")

PAGE = 1000  # delayed messages read per round trip when looking for retries
RECHECK_CAP_S = 1.0  # longest wait before looking again while retries are pending


class Burst:
    """The end-of-burst check of one worker over ``queues``."""

    def __init__(self, queues: list[Queue], loads: Callable[[bytes], Any],
                 clock: Callable[[], float] = time.monotonic,
                 release: Callable[[], int] = lambda: 0) -> None:
        """``release()``: queue what waited on jobs that are over (depends_on); how many."""
        self.queues = queues
        self.release = release
        self.loads = loads
        self.clock = clock
        #: Make pending retries due at once rather than wait out their delays.
        self.fast_forward = False
        #: Retry delays skipped by fast-forwarding.
        self.skipped_delays = 0
        self._idle_passes = 0
        self._wait_until = float("-inf")

    def busy(self) -> None:
        """A pass took jobs, or jobs still run (or wait to be recorded)."""
        self._idle_passes = 0

    def done(self) -> bool:
        """After a pass that took nothing with nothing running: whether the burst is over
        (two such passes in a row, and no queued, due or retrying job left)."""
        self._idle_passes += 1
        if self._idle_passes < 2 or self.clock() < self._wait_until:
            return False
        # Jobs already due in the delayed set count as waiting; later first attempts do not.
        if (sum(q.promote_due() for q in self.queues) + self.release()
                or any(q.depth() for q in self.queues)):
            return False
        retries = {q: found for q in self.queues if (found := self.waiting_retries(q))}
        if not retries:
            return True
        if self.fast_forward:
            for q, found in retries.items():
                self.skipped_delays += q.make_due(m for m, _ in found)
                q.promote_due()
            return False
        # Look again when the first is due (the supervisor promotes it), within a second.
        first_s = min(due for found in retries.values() for _, due in found) / 1000
        self._wait_until = self.clock() + min(max(first_s - time.time(), 0.0), RECHECK_CAP_S)
        log.debug("burst: %d retr(ies) pending", sum(map(len, retries.values())))
        return False

    def waiting_retries(self, queue: Queue) -> list[tuple[bytes, float]]:
        """The delayed messages of ``queue`` that are retries (attempt > 1), with their due
        time (unix ms). A JSON first attempt is told apart without being parsed."""
        found: list[tuple[bytes, float]] = []
        start = 0
        while page := queue.delayed(start, PAGE):
            start += len(page)
            for message, due in page:
                if message.count(b'"attempt":') == 1 and b'"attempt":1,' in message:
                    continue
                try:
                    if Envelope.from_dict(self.loads(message)).attempt > 1:
                        found.append((message, due))
                except Exception:  # poison: the worker that takes it dead-letters it
                    continue
        return found
