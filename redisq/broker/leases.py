"""Consumer leases on one queue: renew ours, recover the messages of consumers whose lease
ran out, and give ours back on a clean stop.

A consumer registers in the queue's ``consumers`` set and keeps ``lease`` alive (a key with a
TTL) while it runs; its reserved messages sit in its own processing list. When the lease key
is gone, any other consumer moves that list back to the queue (``lua/requeue_stale.lua``).

Fencing: each registration is an *epoch*, a token kept in the queue's ``epochs`` hash, which
the steps on jobs (reserve, start, settle) must show; recovery ends it in the step that takes
the messages. A consumer that was frozen past its lease therefore cannot start or settle what
was taken from it; its next renewal learns that and registers it again under a new token.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import redis

from ..backend import keys
from ..backend.scripts import Scripts

log = logging.getLogger("redisq.queue")


def new_token() -> str:
    """A fresh epoch token (unique per consumer and registration, not a secret)."""
    return os.urandom(6).hex()


def renew(scripts: Scripts, consumer_id: str, lease_ms: int,
          tokens: Mapping[str, str]) -> dict[str, str]:
    """Register ``consumer_id`` and refresh its lease on each queue of ``tokens`` (queue → the
    consumer's epoch token there, '' before it first registered), in one round trip. Returns
    the token in force on each queue: a new one where the epoch had ended (see the module)."""
    calls = [("renew", [keys.consumers(q), keys.lease(q, consumer_id), keys.epochs(q)],
              [consumer_id, lease_ms, token, new_token()]) for q, token in tokens.items()]
    answers = scripts.run_many(calls)
    return {q: a.decode() if isinstance(a, bytes) else str(a)
            for q, a in zip(tokens, answers, strict=True)}


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
    ks = [keys.consumers(q), keys.pending(q), keys.stats(q), keys.epochs(q)]
    for m in stale:
        ks += [keys.lease(q, m), keys.processing(q, m), keys.inbox(q, m)]
    n = int(scripts.requeue_stale(keys=ks, args=stale))
    if n:
        log.warning("queue %s: recovered %d message(s) of expired consumer(s) %s",
                    q, n, ",".join(stale))
    return n


def release(client: redis.Redis, q: str, consumer_id: str, scripts: Scripts | None = None) -> None:
    """Move every message of our processing list back to ``q`` and drop our lease, so that
    other consumers take them at once instead of after the lease (one Lua step: it also works
    at maxmemory, see ``lua/release.lua``). It also ends our epoch (see the module)."""
    (scripts or Scripts(client)).run("release", [
        keys.processing(q, consumer_id), keys.pending(q), keys.consumers(q),
        keys.lease(q, consumer_id), keys.epochs(q), keys.inbox(q, consumer_id)], [consumer_id])
