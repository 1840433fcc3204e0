"""The consuming side of queues: reserve (with lost-reply recovery); what it then holds (leases,
ack, nack, bury, resting queues) is :mod:`redisq.broker.holding`.

See :mod:`redisq.queue` for how a reservation works and why nothing is lost.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import redis

from ..backend import keys
from ..backend.cluster import is_cluster
from ..backend.connection import (
    CONNECTION_ERRORS,
    Outage,
    drop_idle_connections,
)
from ..backend.pressure import MemoryPressure
from ..backend.scripts import Scripts
from ..backend.wire import wire_for
from ..model import Message
from .holding import Holder
from .resting import RestingQueues
from .waits import Waits
from .weights import WeightedOrder

log = logging.getLogger("redisq.queue")


#: How long a consumer whose every queue rests (cluster) waits before it looks again.
PROBE_WAIT_S = 0.5
#: At maxmemory, how often an idle consumer looks for messages (BLMOVE is refused there).
OOM_POLL_S = 0.1
#: Most messages one orphan check claims from an inbox (normally it holds none: a move's
#: claim takes its one message in the same round trip).
ORPHAN_CLAIM_N = 100


def _nones() -> Iterable[None]:
    while True:
        yield None



class Consumer(Holder):
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
        weights: Sequence[int] | None = None,
    ) -> None:
        """``mark_jobs``: a worker id; batch reservations then also mark job records started
        (see ``lua/reserve.lua``) and report each job's status before. ``weights``: one per
        queue: weighted order instead of strict priority (see :mod:`redisq.broker.weights`)."""
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
        self._init_holding()
        self._check_orphans = True  # a previous run of this id may have left messages
        # waiters and probes
        self._waits = Waits(client, self.id, 2 * len(self.queues), self.scripts)
        # The epoch token each waiter's blocking move was sent under (its message belongs
        # to that epoch).
        self._wait_tokens: dict[str, str] = {}
        self.mark_jobs = mark_jobs
        # A worker's blocking moves claim what they bring in the same round trip (see
        # redisq.broker.waits); on a cluster they do not (the caller marks them after).
        self._claims = mark_jobs is not None and not is_cluster(client)
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
        self.order = WeightedOrder(self.queues, weights) if weights else None

    # -- keys --------------------------------------------------------------------------------
    def _reserve_keys(self, q: str) -> list[str]:
        return [keys.pending(q), keys.processing(q, self.id), keys.lease(q, self.id),
                keys.consumers(q), keys.epochs(q), keys.done(q)]

    # -- reserving ---------------------------------------------------------------------------
    def reserve(self, n: int = 1, timeout_s: float | None = None) -> list[Message]:
        """Up to ``n`` messages, highest-priority queue first; waits up to ``timeout_s``
        (default ``block_timeout_s``) when all queues are empty. Never raises on connection
        errors: returns ``[]`` after backing off."""
        if n < 1:
            return []
        timeout_s = self.block_timeout_s if timeout_s is None else timeout_s
        return self._guarded(lambda got: self._reserve(n, timeout_s, got))

    def can_wait_alone(self) -> bool:
        """Whether :meth:`wait` applies: one queue, taken from, whose waits claim."""
        return self._claims and len(self.queues) == 1 and not self.skip(self.queues[0])

    def wait(self, timeout_s: float | None = None) -> list[Message]:
        """Only the blocking part of :meth:`reserve` (see :meth:`can_wait_alone`), for a
        caller that just found nothing without blocking and runs what comes on the thread
        that waited (no hand-over on an idle worker's latency path). The wait counts as a
        take in flight: an orphan check meanwhile is put off. Never raises on connection
        errors (as :meth:`reserve`)."""
        timeout_s = self.block_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._takes += 1
            self._takes_in_flight += 1
        try:
            got = self._guarded(lambda got: got.extend(self._block(timeout_s)))
        finally:
            with self._lock:
                self._takes_in_flight -= 1
        if not got:
            self._check_orphans = True  # an empty wait: a cheap moment to look (see _reserve)
        return got

    def _guarded(self, fill: Callable[[list[Message]], object]) -> list[Message]:
        """What ``fill`` puts in a list, with reserve's handling of errors."""
        got: list[Message] = []
        try:
            fill(got)
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
        queues = self.queues if self.order is None else self.order.next()
        queues = queues if self._rest is None else self._rest.awake(queues)
        return [q for q in queues if not self.skip(q)]

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

    def _claim_call(self, q: str, token: str, n: int = 1) -> tuple[str, list[str], list[Any]]:
        """The reserve step that claims what a blocking move put in our inbox (see
        ``lua/reserve.lua``): marked started, fenced, into our processing list; given back
        if the queue was paused or our epoch ended while the wait was out."""
        return "reserve", [keys.inbox(q, self.id), *self._reserve_keys(q)[1:], keys.PAUSED,
                           keys.pending(q)], [
            n, self.id, 0, keys.job_prefix(q), self.mark_jobs, "", token, q]

    def _accept(self, q: str, answer: list[bytes] | int, token: str) -> list[Message]:
        if isinstance(answer, int):  # -1: our epoch on q ended; nothing was moved
            self.lease_lost(q, token)
            return []
        if self.mark_jobs is None:
            return self._hold(q, answer, token=token)
        return self._hold(q, answer[0::2], (b.decode() for b in answer[1::2]), token)

    def _blmove(self, q: str, timeout_s: float, token: str) -> list[bytes] | int | None:
        try:
            moved = self._waits.move(q, timeout_s,
                                     self._claim_call(q, token) if self._claims else None)
        except redis.OutOfMemoryError as exc:
            # Redis refuses BLMOVE at maxmemory (a move may grow memory), not the reserve
            # step (allow-oom): wait a moment, then the next reserve takes what is waiting
            # with it. Queues are seldom empty while Redis is full.
            self.pressure.refused("a blocking reserve", exc)
            self._waits.woken.wait(min(timeout_s, OOM_POLL_S))
            return None
        self.pressure.room()
        return moved

    def _moved(self, q: str, moved: list[bytes] | int | None, token: str) -> list[Message]:
        """The messages a blocking move brought (see :data:`redisq.broker.waits.Move`)."""
        if moved is None:
            return []
        if self._claims or isinstance(moved, int):
            return self._accept(q, moved, token)
        return self._hold(q, moved, token=token)

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
            return self._moved(q, self._blmove(q, timeout_s, token), token)
        # Several queues: one blocking move per queue on a waiter thread; whichever returns
        # first wins. The others keep waiting and are harvested by later calls.
        for q in self._queues_now():
            if not self._waits.waiting(q):
                token = self._wait_tokens[q] = self.token(q)
                self._waits.start(q, self.block_timeout_s, partial(self._blmove, token=token))
        # (None waiting: every queue rests on a cluster; their probes come later.)
        self._waits.wait_any(timeout_s if self._waits else min(timeout_s, PROBE_WAIT_S))
        return self._harvest_waiters(len(self.queues))

    def _harvest_waiters(self, n: int) -> list[Message]:
        out: list[Message] = []
        for q in self._waits.answered():
            if len(out) >= n:
                break
            token = self._wait_tokens.pop(q, "")
            try:
                moved = self._waits.collect(q)  # re-raises a connection error of the waiter
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
            out += self._moved(q, moved, token)
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
        if self._claims:
            # What a move put in our inbox and its claim did not take (a lost reply, a
            # flushed script cache): claimed now, it is among the orphans read next.
            self.scripts.run_many([self._claim_call(q, self._tokens[q], ORPHAN_CLAIM_N)
                                   for q in self.queues])
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

















