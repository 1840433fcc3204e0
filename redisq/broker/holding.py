"""What a :class:`~redisq.broker.consumer.Consumer` does with the queues and messages it holds:
its epoch tokens and leases (heartbeat, recovery of dead consumers' messages), settling (ack,
nack, bury), and, on a Redis Cluster, per-queue steps where a queue whose node failed rests
while the others go on.

A base class of its own so ``consumer.py`` keeps to reserving and lost-reply recovery; the
consumer's own state is set in its ``__init__`` and declared here for the type checker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from ..backend import keys
from ..backend.cluster import node_name
from ..backend.connection import CONNECTION_ERRORS, CONNECTION_OR_REPLY_ERRORS
from ..backend.scripts import Scripts
from ..model import Message, as_bytes
from . import leases
from .resting import RestingQueues
from .waits import Waits

log = logging.getLogger("redisq.queue")


class Holder:
    """Epoch tokens, leases, settling and resting queues of a consumer (see the module
    docstring)."""

    client: redis.Redis
    queues: list[str]
    id: str
    lease_s: float
    dead_max: int
    clock: Callable[[], float]
    scripts: Scripts
    _check_orphans: bool
    _waits: Waits
    _rest: RestingQueues | None

    def _init_holding(self) -> None:
        """The state of what this consumer holds (after ``queues`` is set)."""
        self._held: dict[str, Counter[bytes]] = {q: Counter() for q in self.queues}
        self._lock = threading.Lock()
        self._last_beat = float("-inf")
        self._last_recovery = float("-inf")
        # Our epoch token on each queue ('' until the first renewal; see leases.py).
        self._tokens: dict[str, str] = dict.fromkeys(self.queues, "")
        self._renew_lock = threading.Lock()  # one renewal at a time: each may change a token
        # When the last renewal that kept each epoch was sent, by the monotonic and the wall
        # clock: our lease there lives at least lease_s from then (see epoch_known).
        self._confirmed = dict.fromkeys(self.queues, (float("-inf"), float("-inf")))

    def _harvest_waiters(self, n: int) -> list[Message]:
        """The messages blocking moves brought in (the consumer's: see its reserving)."""
        raise NotImplementedError

    def token(self, q: str) -> str:
        """Our epoch token on ``q`` (what our job steps there show; see :mod:`redisq.leases`)."""
        with self._lock:
            return self._tokens[q]

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    # -- resting queues (cluster) ------------------------------------------------------------
    def _node_down(self, q: str, exc: BaseException) -> None:
        """``q``'s node failed: ``q`` and every other queue on that node rest (each would
        otherwise find out by itself, a socket deadline at a time if the node is frozen)."""
        assert self._rest is not None
        node = node_name(self.client, keys.pending(q))  # type: ignore[arg-type]
        for other in self.queues:
            if other == q or (node is not None
                              and node_name(self.client, keys.pending(other)) == node):  # type: ignore[arg-type]
                self._rest.rest(other, exc)

    def resting(self, q: str) -> bool:
        """Whether ``q`` rests (on a cluster: its node failed and was not reached since)."""
        return self._rest is not None and q in self._rest

    def probe_resting(self) -> None:
        """Probe each resting queue whose backoff is over, on a waiter thread (a frozen node
        then holds up that thread only). Called by every reserve and by the worker's
        supervisor: a worker whose slots all hold jobs of a resting queue, waiting to be
        recorded, reserves nothing until that queue wakes."""
        if self._rest is None:
            return
        for q in self._rest.claim_due():
            self._waits.background(self._probe, q)

    def _probe(self, q: str) -> None:
        try:
            self._renew(q)  # answered: the node serves q again, and our lease there is fresh
        except CONNECTION_OR_REPLY_ERRORS as exc:  # e.g. CLUSTERDOWN, TRYAGAIN
            self._node_down(q, exc)
            return
        assert self._rest is not None
        self._rest.woke(q)

    def _each_queue(self, step: Callable[[str], Any]) -> None:
        """``step(q)`` for every queue. On a cluster a queue whose node fails rests and the
        others go on; the error is raised only when no queue's node answered."""
        if self._rest is None:
            for q in self.queues:
                step(q)
            return
        failed: BaseException | None = None
        reached = False
        for q in self._rest.awake(self.queues):  # resting ones: see probe_resting
            try:
                step(q)
            except CONNECTION_ERRORS as exc:
                self._node_down(q, exc)
                failed = exc
                continue
            reached = True
        if failed is not None and not reached:
            raise failed

    # -- leases ------------------------------------------------------------------------------
    def _maintain(self) -> None:
        now = self.clock()
        if now - self._last_beat >= self.lease_s / 3:
            self.heartbeat()
        if now - self._last_recovery >= self.lease_s / 2:
            self._last_recovery = now
            self.requeue_stale()

    def heartbeat(self) -> None:
        """Refresh this consumer's lease on every queue (one round trip; on a cluster one per
        queue, so that a node that is down keeps no other queue's lease from renewal)."""
        if self._rest is None:
            self._renew(*self.queues)
        else:
            self._each_queue(self._renew)
        self._last_beat = self.clock()

    def _renew(self, *queues: str) -> None:
        with self._renew_lock:
            with self._lock:
                tokens = {q: self._tokens[q] for q in queues}
            sent = (self.clock(), time.time())
            self._adopt(leases.renew(self.scripts, self.id, self.lease_ms, tokens), sent)

    def _adopt(self, tokens: dict[str, str], sent: tuple[float, float]) -> None:
        """Take the tokens a renewal answered. A queue whose token changed after the first
        registration had its epoch ended by recovery: every message we held there went back
        to the queue (and may run elsewhere), so none is ours any more; our processing list
        now holds only what moved in since (a blocking move's), which the orphan check
        delivers again under the new epoch."""
        with self._lock:
            for q, token in tokens.items():
                self._confirmed[q] = sent
                old = self._tokens[q]
                if token == old:
                    continue
                self._tokens[q] = token
                if not old:
                    continue  # the first registration
                dropped = sum(self._held[q].values())
                self._held[q].clear()
                self._check_orphans = True
                log.warning("consumer %s: lease on queue %s lost (it expired and another "
                            "consumer recovered its messages); %d message(s) it held are no "
                            "longer its own; registered again under a new epoch", self.id, q,
                            dropped)

    def epoch_known(self, q: str, token: str | None) -> bool | None:
        """Whether ``token`` is still our epoch on ``q``, as far as we know without asking
        Redis: False once a renewal replaced it; True while our lease there cannot have
        expired yet (the last renewal under it was sent less than 0.8 lease ago by both
        clocks, and recovery needs the lease to expire first); None when we cannot tell (we
        were held up, e.g. frozen, or renewals are failing): ask :meth:`epoch_holds`."""
        if not token:
            return True  # taken before our first registration: nothing to fence
        with self._lock:
            if token != self._tokens[q]:
                return False
            mono, wall = self._confirmed[q]
        bound = 0.8 * self.lease_s
        return True if (self.clock() - mono < bound and time.time() - wall < bound) else None

    def epoch_holds(self, q: str, token: str) -> bool:
        """Ask Redis whether ``token`` is still our epoch on ``q`` (one round trip)."""
        holds = self.client.hget(keys.epochs(q), self.id) == token.encode()
        if not holds:
            self.lease_lost(q, token)
        return holds

    def lease_lost(self, q: str, token: str) -> None:
        """A step on ``q`` under ``token`` was refused because that epoch ended: renew (and so
        register again) on the next reservation instead of waiting for the heartbeat."""
        with self._lock:
            if token != self._tokens[q]:
                return  # an older epoch: already replaced
        self._last_beat = float("-inf")

    def requeue_stale(self) -> int:
        """Give back the messages of consumers whose lease expired; returns how many moved."""
        moved = [0]

        def recover(q: str) -> None:
            moved[0] += leases.recover_stale(self.client, self.scripts, q, self.id)

        self._each_queue(recover)
        return moved[0]

    # -- settling ----------------------------------------------------------------------------
    def forget(self, m: Message) -> None:
        """Stop tracking a message settled by another step (e.g. a job's ``settle``)."""
        with self._lock:
            if m.token and m.token != self._tokens[m.queue]:
                return  # taken under an epoch that ended: not counted any more
            held = self._held[m.queue]
            held[m.body] -= 1
            if held[m.body] <= 0:
                del held[m.body]

    def ack(self, messages: Sequence[Message]) -> int:
        """Acknowledge finished messages (one round trip per queue); returns how many were
        still held (a message recovered by another consumer after our lease expired is not)."""
        by_queue: dict[str, list[bytes]] = {}
        for m in messages:
            by_queue.setdefault(m.queue, []).append(m.body)
        removed = 0
        for q, bodies in by_queue.items():
            removed += int(self.scripts.ack(keys=[keys.processing(q, self.id), keys.stats(q)],
                                            args=bodies))
        for m in messages:
            self.forget(m)
        return removed

    def nack(self, m: Message, front: bool = True) -> bool:
        """Give a message back to its queue (next in line unless ``front`` is false)."""
        q = m.queue
        done = self.scripts.nack(
            keys=[keys.processing(q, self.id), keys.pending(q), keys.stats(q)],
            args=[m.body, "front" if front else "back"])
        self.forget(m)
        return bool(done)

    def bury(self, m: Message, entry: bytes | str) -> bool:
        """Move a message to the dead-letter list with ``entry`` (e.g. JSON with the reason)."""
        q = m.queue
        done = self.scripts.bury(
            keys=[keys.processing(q, self.id), keys.dead(q), keys.stats(q)],
            args=[m.body, as_bytes(entry), self.dead_max])
        self.forget(m)
        return bool(done)

    def recheck(self) -> None:
        """Look for unhanded messages in our processing lists on the next ``reserve`` (after a
        step that forgot messages it could not settle)."""
        self._check_orphans = True

    def held(self) -> int:
        """Messages handed out by this consumer and not settled yet."""
        with self._lock:
            return sum(sum(c.values()) for c in self._held.values())

    def close(self, release: bool = True, keep: Iterable[str] | None = ()) -> None:
        """Stop waiting; with ``release``, give every unsettled message back and drop the lease
        so other consumers take them at once instead of after the lease. The queues in
        ``keep`` (None: all) are not released: some of their messages' outcomes may still be
        written; their lease runs out instead."""
        self._waits.close()  # waits at most one block_timeout_s
        try:
            if self._waits:
                self._harvest_waiters(len(self.queues))
            if release and keep is not None:
                self._release_all(set(keep))
        except CONNECTION_ERRORS as exc:
            log.warning("consumer %s: could not release on close (%s); the lease will expire",
                        self.id, exc)

    def _release_all(self, keep: set[str] | None = None) -> None:
        self._each_queue(lambda q: None if keep and q in keep else self._release(q))

    def _release(self, q: str) -> None:
        leases.release(self.client, q, self.id, self.scripts)
        with self._lock:
            self._held[q].clear()
