"""Per-queue backoff for consumers on Redis Cluster.

On one server every queue shares the connection, so trouble with one is trouble with all and a
consumer backs off as a whole (:class:`redisq.backend.connection.Outage`). On a cluster each queue
lives on the node of its slot: a node that is down (or frozen) must not stop the queues of the
healthy nodes. A queue whose node failed *rests*: the hot paths skip it, and once its own jittered backoff is
over a call on a background thread probes it; the first success wakes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ..backend.backoff import Backoff

log = logging.getLogger("redisq.queue")

#: Longest rest between probes. Lower than the connection backoff's cap: a probe is one round
#: trip on a background thread, and a claimed queue is never probed twice at once.
PROBE_CAP_S = 1.0


class RestingQueues:
    """Which queues to leave alone for now, and until when (shared by the worker's threads)."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.clock = clock
        self._until: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def awake(self, queues: Iterable[str]) -> list[str]:
        """``queues`` (in order) without the resting ones."""
        if not self._since:
            return list(queues)
        with self._lock:
            return [q for q in queues if q not in self._since]

    def claim_due(self) -> list[str]:
        """Resting queues whose backoff is over, each claimed for one probe (off the hot
        path: a frozen node makes every call wait for the socket deadline). The probe ends
        the claim with :meth:`woke` or :meth:`rest`."""
        if not self._since:
            return []
        now = self.clock()
        with self._lock:
            due = [q for q, until in self._until.items() if until <= now]
            for q in due:
                self._until[q] = float("inf")
            return due

    def rest(self, queue: str, exc: BaseException) -> None:
        """``queue``'s node failed: skip it for its next backoff delay (logged once per outage)."""
        with self._lock:
            first = queue not in self._since
            if first:
                self._since[queue] = self.clock()
            backoff = self._backoff.setdefault(queue, Backoff(cap_s=PROBE_CAP_S))
            self._until[queue] = self.clock() + backoff.next_delay_s()
        if first:
            log.warning("%s: queue %s unreachable (%s: %s); the other queues go on",
                        self.what, queue, type(exc).__name__, exc)

    def woke(self, queue: str) -> None:
        """A call on ``queue`` succeeded."""
        if queue not in self._since:  # the common case: no lock
            return
        with self._lock:
            since = self._since.pop(queue, None)
            self._until.pop(queue, None)
            self._backoff.pop(queue, None)
        if since is None:
            return
        log.warning("%s: queue %s reachable again after %.2f s", self.what, queue,
                    self.clock() - since)

    def __contains__(self, queue: object) -> bool:
        return queue in self._since
