"""The subscriber's connections for sharded pub/sub on a Redis Cluster (``SSUBSCRIBE``, 7.0+).

A shard channel lives on the master that owns its slot, and only that node takes its
SSUBSCRIBE (another answers MOVED), so a :class:`~redisq.broker.channel.Subscriber` whose channels
hash to three nodes holds three connections: one *leg* per node, with one SSUBSCRIBE per slot
(a multi-channel SSUBSCRIBE must stay in one slot). Classic channels and patterns (sharded
pub/sub has none) share one more leg to any master: a classic PUBLISH reaches every node.
redis-py's ``ClusterPubSub`` is not used: it re-subscribes behind the caller's back (so a
durable channel cannot be replayed from the right moment) and health-checks no leg. Here:

* **Liveness, per leg**: a PING every ``ping_interval_s``, the PONG due within
  ``pong_timeout_s``; what a leg already sent is read before it is declared dead.
* **A leg fails alone** (connection error, missing PONG, MOVED): it is closed and its channels
  wait for that node's backoff. The next attempt runs on a short-lived helper thread (slot
  table, connect, subscribe): a node that accepts connections but does not answer would
  otherwise hold the other legs up for a read deadline per attempt. A first connection to a
  node that never failed is made inline, so subscriptions are sent when :meth:`add` returns.
* **A slot that moved** (resharding): its node drops the slot's shard channels with an
  unsolicited SUNSUBSCRIBE; they are subscribed again on the new owner at once.
* **Replay hooks**: ``prepare(channels)`` runs before a (S)SUBSCRIBE is sent (the subscriber
  marks where a new durable channel starts), ``subscribed(channel)`` once the server confirms
  it: every later message comes live on the leg, so a replay read then misses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import SlotNotCoveredError

from ..backend.backoff import Backoff
from ..backend.cluster import NodePubSub, refresh_slots
from ..backend.connection import Outage
from ..model import as_text
from .legs import (
    CHANNEL,
    CLASSIC,
    CONFIRMS,
    DROPS,
    LEG_ERRORS,
    PATTERN,
    SHARD,
    UNCOVERED,
    Leg,
    LegJob,
    PongMissing,
    RawMessage,
)

log = logging.getLogger("redisq.channel")

class ShardedSubscription:
    """Legs to the nodes of a cluster, with the subscriptions each should hold. Used by one
    reader thread (the subscriber's); only :meth:`close` may come from another."""

    def __init__(self, client: RedisCluster, ping_interval_s: float, pong_timeout_s: float,
                 outage: Outage, clock: Callable[[], float],
                 prepare: Callable[[set[str]], None], subscribed: Callable[[str], None]) -> None:
        self.client = client
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.outage = outage
        self.clock = clock
        self.prepare = prepare
        self.subscribed = subscribed
        self._legs: dict[str, Leg] = {}
        self._pending: dict[str, set[str]] = {SHARD: set(), CHANNEL: set(), PATTERN: set()}
        self._retry_at: dict[str, float] = {}
        self._backoffs: dict[str, Backoff] = {}  # keys that failed and are not confirmed since
        self._connecting: set[str] = set()  # keys with a helper thread at work
        self._done: list[LegJob] = []  # finished helper jobs, for the reader to adopt
        self._lock = threading.Lock()
        self._closed = False
        self._ready: deque[RawMessage] = deque()  # read while checking a leg's PONG
        self._turn = 0
        self._confirmed = False

    def add(self, shard: Iterable[str] = (), classic: Iterable[str] = (),
            patterns: Iterable[str] = ()) -> None:
        """Subscribe to more: sent before this returns on every leg that is up; the rest
        follow once their node is back."""
        self._pending[SHARD].update(shard)
        self._pending[CHANNEL].update(classic)
        self._pending[PATTERN].update(patterns)
        self._settle()

    @property
    def healthy(self) -> bool:
        """Every subscription is in place and confirmed (a node backing off holds some back)."""
        return (not self._connecting and not any(self._pending.values())
                and not any(leg.unconfirmed for leg in self._legs.values()))

    def poll(self, timeout_s: float) -> RawMessage | None:
        """The next message (redis-py's dict, type ``message``, ``smessage`` or ``pmessage``),
        or None after ``timeout_s``, or None early once a subscription was confirmed (the
        caller's replay backlog may have grown and goes first). A leg's trouble is handled
        here, never raised."""
        deadline = self.clock() + timeout_s
        while not self._closed:
            self._settle()
            self._check_health()
            msg = self._sweep()
            if self.healthy:
                self.outage.succeeded()
            if msg is not None or self._confirmed:
                self._confirmed = False
                return msg
            now = self.clock()
            if now >= deadline:
                return None
            wait = min(deadline - now, self.ping_interval_s, self.pong_timeout_s,
                       min(self._retry_at.values(), default=math.inf) - now)
            self._wait(min(wait, 0.05) if self._connecting else wait)  # a helper may finish
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            done, self._done = self._done, []
        for job in done:
            if job.leg is not None:
                job.leg.close()
        for leg in list(self._legs.values()):
            self._close(leg)
        self._ready.clear()

    # -- subscribing ---------------------------------------------------------------------------
    def _settle(self) -> None:
        """Adopt the helpers' work, then place the subscriptions not in place whose node is
        not backing off."""
        self._adopt()
        now = self.clock()
        # Backoffs that are over: the next attempt may go (and the wait need not end for them).
        self._retry_at = {k: t for k, t in self._retry_at.items() if t > now}
        if (self._pending[CHANNEL] or self._pending[PATTERN]) and self._free(CLASSIC):
            self._place(CLASSIC, None, {CHANNEL: set(self._pending[CHANNEL]),
                                        PATTERN: set(self._pending[PATTERN])})
        if not self._pending[SHARD]:
            return
        groups: dict[str, tuple[ClusterNode, set[str]]] = {}
        uncovered = False
        for ch in self._pending[SHARD]:
            try:
                node = self.client.nodes_manager.get_node_from_slot(self.client.keyslot(ch))
            except SlotNotCoveredError:
                uncovered = True
                continue
            groups.setdefault(node.name, (node, set()))[1].add(ch)
        for name, (node, chans) in groups.items():
            if self._free(name):
                self._place(name, node, {SHARD: chans})
        if uncovered and self._free(UNCOVERED):
            self._fail(UNCOVERED, SlotNotCoveredError("a shard channel's slot has no node"))
            self._start(LegJob(UNCOVERED, None, {}))  # only reads the slot table again
        elif not uncovered:
            self._backoffs.pop(UNCOVERED, None)

    def _free(self, key: str) -> bool:
        """No helper at work for ``key`` and its backoff (if any) is over."""
        return key not in self._connecting and key not in self._retry_at

    def _place(self, key: str, node: ClusterNode | None, wants: dict[str, set[str]]) -> None:
        leg = self._legs.get(key)
        if leg is None and key in self._backoffs:
            for kind, names in wants.items():
                self._pending[kind] -= names  # the job holds them now
            self._start(LegJob(key, node, wants))
            return
        try:
            if leg is None:
                leg = self._legs[key] = self._new_leg(key, node)
            self._subscribe_on(leg, wants)
        except LEG_ERRORS as exc:
            self._fail(key, exc)  # puts back what the leg held; ``wants`` never left pending
            return
        for kind, names in wants.items():
            self._pending[kind] -= names

    def _new_leg(self, key: str, node: ClusterNode | None) -> Leg:
        if node is None:  # the classic leg: any master, as a classic PUBLISH reaches them all
            primaries = self.client.get_primaries()
            if not primaries:
                raise redis.ConnectionError("cluster: no master known")
            node = random.choice(primaries)  # spreads many subscribers over the masters
        pool = self.client.get_redis_connection(node).connection_pool
        return Leg(key, node, NodePubSub(pool), last_ping=self.clock())

    def _subscribe_on(self, leg: Leg, wants: dict[str, set[str]]) -> None:
        """Send the (S|P)SUBSCRIBE commands for ``wants`` on ``leg`` (no reply is awaited:
        confirmations arrive with the messages)."""
        marks = wants.get(SHARD, set()) | wants.get(CHANNEL, set())
        if marks:
            self.prepare(marks)
        for kind, names in wants.items():
            # Held before the command goes out: if the leg fails on the way, its failure
            # puts them back in pending with everything else it held.
            leg.held[kind] |= names
            leg.unconfirmed |= {(kind, n) for n in names}
        by_slot: dict[int, list[str]] = {}
        for ch in sorted(wants.get(SHARD, ())):
            by_slot.setdefault(self.client.keyslot(ch), []).append(ch)
        for group in by_slot.values():  # a multi-channel SSUBSCRIBE must stay in one slot
            leg.pubsub.ssubscribe(*group)
        if wants.get(CHANNEL):
            leg.pubsub.subscribe(*sorted(wants[CHANNEL]))
        if wants.get(PATTERN):
            leg.pubsub.psubscribe(*sorted(wants[PATTERN]))

    def _start(self, job: LegJob) -> None:
        self._connecting.add(job.key)
        threading.Thread(target=self._run_job, args=(job,), daemon=True,
                         name=f"redisq-subscribe-{job.key}").start()

    def _run_job(self, job: LegJob) -> None:
        """On the helper thread: read the slot table again, open the leg and subscribe."""
        try:
            refresh_slots(self.client)
            if any(job.wants.values()):
                leg = self._new_leg(job.key, job.node)
                try:
                    self._subscribe_on(leg, job.wants)
                except BaseException:
                    leg.close()
                    raise
                job.leg = leg
        except Exception as exc:  # the reader decides what it means
            job.error = exc
        with self._lock:
            if not self._closed:
                self._done.append(job)
                return
        if job.leg is not None:
            job.leg.close()

    def _adopt(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        unexpected: Exception | None = None
        for job in done:
            self._connecting.discard(job.key)
            if job.leg is not None:
                self._legs[job.key] = job.leg
                continue
            for kind, names in job.wants.items():
                self._pending[kind] |= names
            if isinstance(job.error, LEG_ERRORS):
                self._fail(job.key, job.error)
            elif job.error is not None:
                unexpected = unexpected or job.error
        if unexpected is not None:
            raise unexpected  # e.g. NOPERM: not a connection problem, as on a single server

    # -- reading -------------------------------------------------------------------------------
    def _sweep(self) -> RawMessage | None:
        """One message from whichever leg has one, taking the legs in turns (a busy channel
        must not starve the others)."""
        if self._ready:
            return self._ready.popleft()
        legs = list(self._legs.values())
        for i in range(len(legs)):
            leg = legs[(self._turn + i) % len(legs)]
            if self._legs.get(leg.key) is not leg:
                continue  # failed earlier in this sweep
            msg: RawMessage | None = self._guarded(leg.key, partial(self._read, leg))
            if msg is not None:
                self._turn = (self._turn + i + 1) % len(legs)
                return msg
        return None

    def _read(self, leg: Leg) -> RawMessage | None:
        """The leg's next message if one has arrived; PONGs, confirmations and drops are
        handled here and not returned."""
        while True:
            raw: RawMessage | None = leg.pubsub.get_message(timeout=0.0)
            if raw is None:
                return None
            kind = raw.get("type")
            if kind in ("message", "smessage", "pmessage"):
                return raw
            name = as_text(raw.get("channel") or "")  # none on a PONG
            if kind == "pong":
                leg.ping_outstanding = None
            elif kind in CONFIRMS:
                leg.unconfirmed.discard((CONFIRMS[kind], name))
                if kind != "psubscribe":
                    self.subscribed(name)
                self._confirmed = True
                if not leg.unconfirmed:
                    self._backoffs.pop(leg.key, None)  # that node works: start small next time
            elif kind in DROPS:
                self._dropped(leg, DROPS[kind], name)

    def _dropped(self, leg: Leg, kind: str, name: str) -> None:
        """The server ended a subscription redisq never gave up: its slot moved away. Slots
        move on a healthy cluster, so the slot table is read again right here."""
        log.info("subscriber: %s dropped %s (its slot moved); subscribing where it is now",
                 leg.node.name, name)
        leg.held[kind].discard(name)
        leg.unconfirmed.discard((kind, name))
        self._pending[kind].add(name)
        refresh_slots(self.client)
        if not any(leg.held.values()):
            self._close(leg)

    def _check_health(self) -> None:
        now = self.clock()
        for leg in list(self._legs.values()):
            if self._legs.get(leg.key) is leg:
                self._guarded(leg.key, partial(self._check, leg, now))

    def _check(self, leg: Leg, now: float) -> None:
        if leg.ping_outstanding is not None:
            if now - leg.ping_outstanding > self.pong_timeout_s:
                while (msg := self._read(leg)) is not None:
                    self._ready.append(msg)
                if leg.ping_outstanding is not None:
                    raise PongMissing(f"{leg.node.name}: no PONG within {self.pong_timeout_s} s")
        elif now - leg.last_ping >= self.ping_interval_s:
            leg.pubsub.ping()
            leg.last_ping = leg.ping_outstanding = now

    def _wait(self, seconds: float) -> None:
        """Until a leg's socket is readable, or ``seconds``."""
        if seconds <= 0:
            return
        conns = [leg.pubsub.connection for leg in self._legs.values()]
        socks = [s for c in conns if (s := getattr(c, "_sock", None)) is not None]
        # TLS: bytes already decrypted inside the socket do not make it readable to poll().
        if any(getattr(s, "pending", lambda: 0)() for s in socks):
            return
        if not socks:
            time.sleep(seconds)
        elif hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            for s in socks:
                poller.register(s, select.POLLIN | select.POLLPRI)
            poller.poll(max(1, int(seconds * 1000)))
        else:
            select.select(socks, [], [], seconds)

    # -- failures ------------------------------------------------------------------------------
    def _guarded(self, key: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except LEG_ERRORS as exc:
            self._fail(key, exc)
            return None

    def _fail(self, key: str, exc: BaseException) -> None:
        """Close ``key``'s leg, put back what it held, and back off before the next attempt
        (which runs on a helper thread and reads the slot table again)."""
        leg = self._legs.get(key)
        where = key
        if leg is not None:
            where = leg.node.name
            for kind, names in leg.held.items():
                self._pending[kind] |= names
            self._close(leg)
            # The replay's pooled connections to that node most likely went the same way.
            with contextlib.suppress(*LEG_ERRORS):
                self.client.get_redis_connection(leg.node).connection_pool.disconnect(
                    inuse_connections=False)
        backoff = self._backoffs.setdefault(key, Backoff(self.outage.backoff.base_s,
                                                         self.outage.backoff.cap_s))
        delay = backoff.next_delay_s()
        self._retry_at[key] = self.clock() + delay
        log.info("subscriber: %s lost (%s: %s); subscribing again in %.2f s",
                 where, type(exc).__name__, exc, delay)
        self.outage.failed(exc, wait=False)

    def _close(self, leg: Leg) -> None:
        if self._legs.get(leg.key) is leg:
            del self._legs[leg.key]
        leg.close()


__all__ = ["ShardedSubscription"]
