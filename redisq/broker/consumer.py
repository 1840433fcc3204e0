"""The consuming side of queues: reserve, ack, nack, bury, leases and lost-reply recovery.

See :mod:`redisq.queue` for how a reservation works and why nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from ..backend import keys
from ..backend.cluster import is_cluster, node_name
from ..backend.connection import (
    CONNECTION_ERRORS,
    CONNECTION_OR_REPLY_ERRORS,
    Outage,
    drop_idle_connections,
)
from ..backend.pressure import MemoryPressure
from ..backend.scripts import Scripts
from ..backend.wire import wire_for
from ..model import Message, as_bytes
from . import leases
from .resting import RestingQueues
from .waits import Waits

log = logging.getLogger("redisq.queue")


#: How long a consumer whose every queue rests (cluster) waits before it looks again.
PROBE_WAIT_S = 0.5
#: At maxmemory, how often an idle consumer looks for messages (BLMOVE is refused there).
OOM_POLL_S = 0.1


def _nones() -> Iterable[None]:
    while True:
        yield None



class Consumer:
    """The consuming side of one or more queues, taken in priority order.

    ``reserve(n)`` returns up to ``n`` messages; each must later be ``ack``-ed (done),
    ``nack``-ed (give back) or ``bury``-ed (dead-letter). Connection trouble never escapes
    ``reserve``: it is logged, counted and backed off, and ``reserve`` returns ``[]``.
    """

    def __init__(
        self,
        client: redis.Redis,
        queues: Sequence[str],
        consumer_id: str | None = None,
        lease_s: float = 30.0,
        block_timeout_s: float = 5.0,
        dead_max: int = 10000,
        outage: Outage | None = None,
        clock: Callable[[], float] = time.monotonic,
        mark_jobs: str | None = None,
        pressure: MemoryPressure | None = None,
    ) -> None:
        """``mark_jobs``: a worker id; batch reservations then also mark job records started
        (see ``lua/reserve.lua``) and report each job's status before."""
        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self.client = client
        self.queues = [keys.check_name(q) for q in queues]
        self.id = consumer_id or uuid.uuid4().hex[:12]
        self.lease_s = lease_s
        self.block_timeout_s = block_timeout_s
        self.dead_max = dead_max
        self.outage = outage or Outage(f"consumer {self.id}")
        self.clock = clock
        self.scripts = Scripts(client)
        self._held: dict[str, Counter[bytes]] = {q: Counter() for q in self.queues}
        self._lock = threading.Lock()
        self._check_orphans = True  # a previous run of this id may have left messages
        self._last_beat = float("-inf")
        self._last_recovery = float("-inf")
        self._waits = Waits(client, self.id, 2 * len(self.queues))  # waiters and probes
        # Our epoch token on each queue ('' until the first renewal; see leases.py), and the
        # token each waiter's blocking move was sent under (its message belongs to that epoch).
        self._tokens: dict[str, str] = dict.fromkeys(self.queues, "")
        self._wait_tokens: dict[str, str] = {}
        self._renew_lock = threading.Lock()  # one renewal at a time: each may change a token
        # When the last renewal that kept each epoch was sent, by the monotonic and the wall
        # clock: our lease there lives at least lease_s from then (see epoch_known).
        self._confirmed = dict.fromkeys(self.queues, (float("-inf"), float("-inf")))
        self.mark_jobs = mark_jobs
        self.pressure = pressure or MemoryPressure(f"consumer {self.id}")
        self._takes = 0  # reservations started by any thread (a seqlock for the orphan check)
        self._takes_in_flight = 0
        # On a cluster a queue whose node fails rests by itself (the others go on); on one
        # server (or with one queue) any failure is every queue's, and the whole consumer
        # backs off (outage).
        self._rest = (RestingQueues(f"consumer {self.id}", clock)
                      if is_cluster(client) and len(self.queues) > 1 else None)
        #: ``skip(q)``: take no more messages from ``q`` for now (a worker sets it: too many
        #: outcomes of ``q``'s jobs wait to be written). Messages already in flight still come.
        self.skip: Callable[[str], bool] = lambda q: False

    # -- keys --------------------------------------------------------------------------------
    def _reserve_keys(self, q: str) -> list[str]:
        return [keys.pending(q), keys.processing(q, self.id), keys.lease(q, self.id),
                keys.consumers(q), keys.epochs(q)]

    def token(self, q: str) -> str:
        """Our epoch token on ``q`` (what our job steps there show; see :mod:`redisq.leases`)."""
        with self._lock:
            return self._tokens[q]

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    # -- reserving ---------------------------------------------------------------------------
    def reserve(self, n: int = 1, timeout_s: float | None = None) -> list[Message]:
        """Up to ``n`` messages, highest-priority queue first; waits up to ``timeout_s``
        (default ``block_timeout_s``) when all queues are empty. Never raises on connection
        errors: returns ``[]`` after backing off."""
        if n < 1:
            return []
        got: list[Message] = []
        try:
            self._reserve(n, self.block_timeout_s if timeout_s is None else timeout_s, got)
        except BaseException as exc:
            # Messages this call already took (orphans, a harvested wait, one queue of a
            # batch) never reach the caller: un-hold them so the orphan check delivers them
            # again, instead of leaving them held, unseen and kept alive by our lease.
            self._unhold(got)
            self._check_orphans = True
            if not isinstance(exc, CONNECTION_ERRORS):
                raise
            # Replace this thread's lean connection and the idle pooled ones now rather than
            # wait for each to time out in turn on a path that just died.
            wire_for(self.client).drop()
            drop_idle_connections(self.client)
            self.outage.failed(exc)
            return []
        self.outage.succeeded()
        return got

    def _reserve(self, n: int, timeout_s: float, got: list[Message]) -> None:
        """Fill ``got`` in place, so that what was taken before an error is known."""
        self._maintain()
        self.probe_resting()
        if self._check_orphans:
            got += self._take_orphans(n)
        got += self._harvest_waiters(n - len(got))
        if len(got) < n:
            got += self._take_batch(n - len(got))
        if got or timeout_s <= 0:
            return
        got += self._block(min(timeout_s, self.block_timeout_s))
        if not got:
            # An empty wait is cheap moment to make sure no reply was lost on the way.
            self._check_orphans = True

    def _unhold(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.forget(m)

    def _hold(self, q: str, bodies: Iterable[bytes],
              befores: Iterable[str | None] | None = None,
              token: str | None = None) -> list[Message]:
        """Messages taken from ``q`` under epoch ``token`` (default: the current one). One
        taken under an epoch that has ended since is handed out but not counted as held: its
        steps will be refused, and the same body may be ours again under the new epoch."""
        out = []
        with self._lock:
            current = self._tokens[q]
            token = current if token is None else token
            for body, before in zip(bodies, befores or _nones(), strict=False):
                if not token or token == current:
                    self._held[q][body] += 1
                out.append(Message(q, body, before, token))
        return out

    def _take_batch(self, n: int) -> list[Message]:
        return self.take_with([], n)[1]

    def _queues_now(self) -> list[str]:
        queues = self.queues if self._rest is None else self._rest.awake(self.queues)
        return [q for q in queues if not self.skip(q)]

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

    def take_with(self, calls: list[tuple[str, list[str], list[Any]]],
                  n: int) -> tuple[list[Any], list[Message]]:
        """Run script ``calls`` (e.g. settling finished jobs) and reserve up to ``n`` messages
        without blocking, in one round trip while the first queue has enough; returns the
        calls' results and the messages. Connection errors propagate to the caller."""
        results: list[Any] = []
        out: list[Message] = []
        with self._lock:
            self._takes += 1
            self._takes_in_flight += 1
        try:
            failed: BaseException | None = None
            reached = False
            for q in self._queues_now():
                token = self._tokens[q]  # (a dict read: no lock on the hot path)
                batch = ([*calls, self._reserve_call(q, n - len(out), token)] if n > len(out)
                         else calls)
                try:
                    answers = self.scripts.run_many(batch)
                except CONNECTION_ERRORS as exc:
                    if self._rest is None or calls:
                        # With calls, the failing node may be theirs, not q's: resting q would
                        # stop a healthy queue until its probe. The caller records them again
                        # and a reservation without calls finds out which node is down.
                        raise
                    self._node_down(q, exc)
                    failed = exc
                    continue
                reached = True
                results += answers[:len(calls)]
                calls = []
                if n > len(out):
                    out += self._accept(q, answers[-1], token)
                if len(out) >= n:
                    break
            if calls:  # every queue rests: the calls still run
                results += self.scripts.run_many(calls)
            if failed is not None and not reached:
                raise failed  # no queue's node answered: an outage, backed off as a whole
        except BaseException:
            self._unhold(out)  # taken from an earlier queue: orphans again, found by recheck
            raise
        finally:
            with self._lock:
                self._takes_in_flight -= 1
        if out and not self.mark_jobs:
            self._last_beat = self.clock()  # the reserve step refreshed the lease
        return results, out

    def _reserve_call(self, q: str, n: int, token: str) -> tuple[str, list[str], list[Any]]:
        # Jobs mode (a worker) keeps its lease by heartbeat; plain consumers refresh it here.
        args: list[Any] = [n, self.id, 0 if self.mark_jobs else self.lease_ms]
        if self.mark_jobs is not None:
            args += [keys.job_prefix(q), self.mark_jobs, f"{time.time():.3f}", token]
        return "reserve", self._reserve_keys(q), args

    def _accept(self, q: str, answer: list[bytes] | int, token: str) -> list[Message]:
        if isinstance(answer, int):  # -1: our epoch on q ended; nothing was moved
            self.lease_lost(q, token)
            return []
        if self.mark_jobs is None:
            return self._hold(q, answer, token=token)
        return self._hold(q, answer[0::2], (b.decode() for b in answer[1::2]), token)

    def _blmove(self, q: str, timeout_s: float) -> bytes | None:
        try:
            body = self._waits.move(q, timeout_s)
        except redis.OutOfMemoryError as exc:
            # Redis refuses BLMOVE at maxmemory (a move may grow memory), not the reserve
            # step (allow-oom): wait a moment, then the next reserve takes what is waiting
            # with it. Queues are seldom empty while Redis is full.
            self.pressure.refused("a blocking reserve", exc)
            self._waits.woken.wait(min(timeout_s, OOM_POLL_S))
            return None
        self.pressure.room()
        return body

    def interrupt(self) -> None:
        """End blocking waits now (from another thread, when the worker stops): each returns
        as if it had timed out, and later ones return at once (see :mod:`redisq.waits`)."""
        self._waits.interrupt()

    def _block(self, timeout_s: float) -> list[Message]:
        # A moved message belongs to the epoch the move was sent under: if recovery ends that
        # epoch before the reply is read (we were frozen), starting it is refused.
        if len(self.queues) == 1 and not self.skip(self.queues[0]):
            q = self.queues[0]
            token = self.token(q)
            body = self._blmove(q, timeout_s)
            return self._hold(q, [body], token=token) if body is not None else []
        # Several queues: one blocking move per queue on a waiter thread; whichever returns
        # first wins. The others keep waiting and are harvested by later calls.
        for q in self._queues_now():
            if not self._waits.waiting(q):
                self._wait_tokens[q] = self.token(q)
            self._waits.start(q, self.block_timeout_s, self._blmove)
        # (None waiting: every queue rests on a cluster; their probes come later.)
        self._waits.wait_any(timeout_s if self._waits else min(timeout_s, PROBE_WAIT_S))
        return self._harvest_waiters(len(self.queues))

    def _harvest_waiters(self, n: int) -> list[Message]:
        out: list[Message] = []
        for q in self._waits.answered():
            if len(out) >= n:
                break
            token = self._wait_tokens.pop(q, None)
            try:
                body = self._waits.collect(q)  # re-raises a connection error of the waiter
            except CONNECTION_ERRORS as exc:
                if self._rest is None:
                    self._unhold(out)  # harvested from other queues: orphans again
                    raise
                self._node_down(q, exc)  # cluster: this queue's node; the others go on
                continue
            except BaseException:
                self._unhold(out)
                raise
            if self._rest is not None:
                self._rest.woke(q)  # a waiter started before q rested may answer after
            if body is not None:
                out += self._hold(q, [body], token=token)
        return out

    def _quiet(self) -> int | None:
        """The take counter when no other thread is between moving messages and holding them
        (their messages would look like orphans), else None."""
        with self._lock:
            busy = self._takes_in_flight or self._waits.busy()
            return None if busy else self._takes

    def _take_orphans(self, n: int) -> list[Message]:
        """Messages in our processing lists that we never handed out (their reply was lost).
        Runs only while no other thread is reserving (checked before and after the read, as
        a seqlock), else it is tried again on a later call."""
        before = self._quiet()
        if before is None:
            return []
        stored_lists = self._processing_lists()
        orphans: list[Message] = []
        with self._lock:
            if self._takes != before or self._takes_in_flight:
                return []
            for q, stored in stored_lists.items():
                # The list's tail is the oldest reservation: deliver oldest first.
                for body, count in (Counter(reversed(stored)) - self._held[q]).items():
                    orphans += [Message(q, body, token=self._tokens[q])] * count
        if orphans:
            log.warning("consumer %s: recovered %d reserved message(s) whose reply was lost",
                        self.id, len(orphans))
        # Give the surplus back first, while none is held: if that fails, every orphan is
        # still an orphan and the next call finds them all again.
        self._give_back(orphans[n:])
        out = orphans[:n]
        with self._lock:
            for m in out:
                if not m.token or m.token == self._tokens[m.queue]:
                    self._held[m.queue][m.body] += 1
        self._check_orphans = len(stored_lists) < len(self.queues)  # a resting queue: later
        return out

    def _processing_lists(self) -> dict[str, list[bytes]]:
        """Our processing list of each queue (on a cluster: of each queue that answers)."""
        if self._rest is None:
            pipe = self.client.pipeline(transaction=False)
            for q in self.queues:
                pipe.lrange(keys.processing(q, self.id), 0, -1)
            return dict(zip(self.queues, pipe.execute(), strict=True))
        out: dict[str, list[bytes]] = {}

        def read(q: str) -> None:
            out[q] = self.client.lrange(keys.processing(q, self.id), 0, -1)  # type: ignore[assignment]

        self._each_queue(read)
        return out

    def _give_back(self, extra: list[Message]) -> None:
        """Requeue unheld orphans at the front, oldest taken first."""
        for m in reversed(extra):
            self.scripts.nack(keys=[keys.processing(m.queue, self.id), keys.pending(m.queue),
                                    keys.stats(m.queue)], args=[m.body, "front"])

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
