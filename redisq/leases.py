"""Consumer leases on one queue: renew ours, recover the messages of consumers whose lease
ran out, and give ours back on a clean stop.

A consumer registers in the queue's ``consumers`` set and keeps ``lease`` alive (a key with a
TTL) while it runs; its reserved messages sit in its own processing list. When the lease key
is gone, any other consumer moves that list back to the queue (``lua/requeue_stale.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from . import keys
from .scripts import Scripts

log = logging.getLogger("redisq.queue")


def renew(client: redis.Redis, consumer_id: str, lease_ms: int, queues: Iterable[str],
          scripts: Scripts | None = None) -> None:
    """Register ``consumer_id`` and refresh its lease on ``queues`` (one round trip). A Lua
    step (``lua/renew.lua``), not SADD+SET: Redis refuses those at maxmemory, and a consumer
    must keep its lease while it drains a full Redis."""
    scripts = scripts or Scripts(client)
    scripts.run_many([("renew", [keys.consumers(q), keys.lease(q, consumer_id)],
                       [consumer_id, lease_ms]) for q in queues])


def recover_stale(client: redis.Redis, scripts: Scripts, q: str, consumer_id: str) -> int:
    """Give back to ``q`` the messages of other consumers whose lease expired; how many."""
    members = [m.decode() for m in client.smembers(keys.consumers(q))]  # type: ignore[union-attr]
    others = [m for m in members if m != consumer_id]
    if not others:
        return 0
    pipe = client.pipeline(transaction=False)
    for m in others:
        pipe.exists(keys.lease(q, m))
    stale = [m for m, alive in zip(others, pipe.execute(), strict=True) if not alive]
    if not stale:
        return 0
    ks = [keys.consumers(q), keys.pending(q), keys.stats(q)]
    for m in stale:
        ks += [keys.lease(q, m), keys.processing(q, m)]
    n = int(scripts.requeue_stale(keys=ks, args=stale))
    if n:
        log.warning("queue %s: recovered %d message(s) of expired consumer(s) %s",
                    q, n, ",".join(stale))
    return n


def release(client: redis.Redis, q: str, consumer_id: str, scripts: Scripts | None = None) -> None:
    """Move every message of our processing list back to ``q`` and drop our lease, so that
    other consumers take them at once instead of after the lease (one Lua step: it also works
    at maxmemory, see ``lua/release.lua``)."""
    (scripts or Scripts(client)).run("release", [
        keys.processing(q, consumer_id), keys.pending(q), keys.consumers(q),
        keys.lease(q, consumer_id)], [consumer_id])
