"""The queue index: which queues exist, for ``redisq info``, the dashboard, metrics, job look-ups
by id and the scheduler's promotion pass.

Every reader walks the whole index, so it must not grow for ever: producers add a queue when
they first write to it and refresh its activity time every :data:`REFRESH_S`, workers refresh
the queues they consume at every heartbeat, and a queue that has nothing queued, delayed,
running or dead-lettered, no consumer, and no activity for an idle TTL drops out
(:func:`prune`, run by workers). The TTL is never shorter than the job record TTLs: a job can
be looked up by id (which walks the index) until its record expires.

Names that are not valid queue names (written into Redis by something other than redisq) are
skipped by readers: a control character must not reach a terminal through ``redisq info``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import redis

from ..model import as_text
from . import keys
from .connection import CONNECTION_OR_REPLY_ERRORS

log = logging.getLogger("redisq.queue")

#: How often a producer process refreshes the activity time of a queue it writes to.
REFRESH_S = 60.0
#: How often a worker looks for idle queues to drop.
PRUNE_EVERY_S = 300.0


def touch(client: redis.Redis, queues: Iterable[str], now: float | None = None) -> None:
    """Record activity on ``queues`` (and add them to the index); one round trip."""
    names = list(queues)
    if not names:
        return
    at = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.sadd(keys.QUEUES, *names)
    pipe.zadd(keys.QUEUES_SEEN, dict.fromkeys(names, at))
    pipe.execute()


def known(client: redis.Redis) -> list[str]:
    """The indexed queue names that are valid names, sorted."""
    names = (as_text(q, "replace") for q in client.smembers(keys.QUEUES))
    return sorted(q for q in names if keys.valid_name(q))


class ProducerIndex:
    """A producer's side of the index: :meth:`register` costs a round trip only on a queue's
    first write and then once per :data:`REFRESH_S`."""

    def __init__(self, client: redis.Redis | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._last: dict[str, float] = {}

    def due(self, queue: str) -> bool:
        """Whether ``queue`` must be (re-)registered now (for callers that write it themselves,
        like the asyncio producer); marks it done."""
        now = self.clock()
        if now - self._last.get(queue, float("-inf")) < REFRESH_S:
            return False
        if len(self._last) > 4096:  # bounded: queue names come from code or a checked allow-list
            self._last.clear()
        self._last[queue] = now
        return True

    def register(self, queue: str) -> None:
        if self.due(queue):
            assert self.client is not None, "register() needs a client"
            touch(self.client, [queue])


def prune(client: redis.Redis, idle_s: float, now: float | None = None) -> list[str]:
    """Drop the queues idle for ``idle_s`` with nothing in them and no consumer; returns their
    names. A queue indexed by an older version (no activity time) gets one now."""
    now = time.time() if now is None else now
    names = [as_text(q, "replace") for q in client.smembers(keys.QUEUES)]
    if not names:
        return []
    seen = client.zmscore(keys.QUEUES_SEEN, names)
    unseen = [q for q, at in zip(names, seen, strict=True) if at is None]
    if unseen:
        client.zadd(keys.QUEUES_SEEN, dict.fromkeys(unseen, now), nx=True)
    idle = [q for q, at in zip(names, seen, strict=True) if at is not None and at < now - idle_s]
    empty = [q for q, used in zip(idle, _in_use(client, idle), strict=True) if not used]
    if not empty:
        return []
    pipe = client.pipeline(transaction=False)
    pipe.srem(keys.QUEUES, *empty)
    pipe.zrem(keys.QUEUES_SEEN, *empty)
    for q in empty:
        pipe.delete(keys.stats(q))
    pipe.execute()
    # A producer may have written between the check and the removal: put those back.
    back = [q for q, used in zip(empty, _in_use(client, empty), strict=True) if used]
    touch(client, back, now)
    dropped = [q for q in empty if q not in back]
    if dropped:
        log.info("dropped %d idle empty queue(s) from the index: %s", len(dropped),
                 ", ".join(map(repr, dropped[:10])))
    return dropped


def _in_use(client: redis.Redis, queues: list[str]) -> list[bool]:
    """For each queue: anything queued, delayed, dead-lettered, or a consumer registered."""
    if not queues:
        return []
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.exists(keys.pending(q), keys.delayed(q), keys.dead(q), keys.consumers(q))
    return [bool(n) for n in pipe.execute()]


class WorkerIndex:
    """A worker's side: refresh its queues at every heartbeat, prune now and then."""

    def __init__(self, client: redis.Redis, queues: list[str], idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.queues = queues
        self.idle_s = idle_s
        self.clock = clock
        self._last_prune = float("-inf")

    def heartbeat(self) -> None:
        """Best effort: an error reply (Redis full refuses the index writes) or, on a cluster,
        the index's node being down is not the worker's problem (it must not keep the worker's
        registry entry from its heartbeat); the next heartbeat tries again."""
        try:
            touch(self.client, self.queues)
            now = self.clock()
            if now - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = now
                prune(self.client, self.idle_s)
        except CONNECTION_OR_REPLY_ERRORS as exc:
            log.debug("queue index not refreshed: %s", exc)
