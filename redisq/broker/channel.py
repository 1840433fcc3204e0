"""A pub/sub channel whose subscribers heal themselves.

redis-py's ``health_check_interval`` sends a PING but never checks that the PONG came back, so a
subscriber behind a half-open connection or a frozen server stays silent forever. A
:class:`Subscriber` here sends its own PING every ``ping_interval_s`` and requires the PONG
within ``pong_timeout_s``; on a miss or any connection error it drops the connection, reconnects
with backoff and subscribes again to everything it had (on a fresh connection, so never twice).

Durable channels (opt-in) also append each message to a capped Stream; a subscriber that was cut
off replays what it missed from its last seen id when it comes back, and drops the live copies
it has already replayed.

On a Redis Cluster whose masters run 7.0 or later, channels are sharded: ``SPUBLISH`` goes to
the master owning the channel's slot (the same slot as its durable stream) and a subscriber
sends ``SSUBSCRIBE`` to each node it needs, over one health-checked connection per node (see
:mod:`redisq.cluster_pubsub`). Patterns and :data:`CLASSIC_CHANNELS` stay classic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.client import PubSub

from ..backend import keys
from ..backend.cluster import sharded_pubsub
from ..backend.connection import CONNECTION_ERRORS, Outage, drop_idle_connections
from ..backend.scripts import Scripts
from ..model import as_text
from .legs import PongMissing as _PongMissing
from .sharded import ShardedSubscription

log = logging.getLogger("redisq.channel")

#: A lost connection, or a subscription whose PINGs went unanswered: reconnect and replay.
_SUBSCRIBER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, _PongMissing)

StreamId = tuple[int, int]

#: Channels that stay classic (PUBLISH/SUBSCRIBE) on a sharded cluster too: job events are
#: published from the settle script, whose keys are in the queue's slot, and a script may only
#: SPUBLISH to a channel in its own keys' slot.
CLASSIC_CHANNELS = frozenset({keys.EVENTS_CHANNEL})


#: A stream entry as a bytes client returns it: (id, {field: value}).
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def _parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class ChannelMessage:
    """One message received on ``channel`` (via ``pattern`` when pattern-subscribed)."""

    channel: str
    data: bytes
    pattern: str | None = None
    id: str | None = None  # stream id, on durable channels
    replayed: bool = False  # delivered from the stream after a reconnect


class Channel:
    """Publishing side of one channel."""

    def __init__(self, client: redis.Redis, name: str, durable: bool = False,
                 maxlen: int = 10_000, scripts: Scripts | None = None) -> None:
        self.client = client
        self.name = keys.check_name(name, "channel")
        self.durable = durable
        self.maxlen = maxlen
        self.scripts = scripts or Scripts(client)

    def publish(self, data: bytes | str) -> int:
        """Send to every current subscriber (one round trip); returns how many received it.

        That count is what the server reports: on a single server (or a Sentinel-managed
        master), every subscriber of the channel. On a sharded cluster (``SPUBLISH``), the
        subscribers connected to the master that owns the channel's slot; subscribers on its
        replicas also get the message but are not counted. On a classic cluster (``PUBLISH``),
        only the subscribers connected to the node the command reached.
        """
        sharded = self.name not in CLASSIC_CHANNELS and sharded_pubsub(self.client)
        if not self.durable:
            if sharded:
                return int(self.client.spublish(self.name, data))
            return int(self.client.publish(self.name, data))
        # The stream key's hash tag is the channel name ({name}, and names have no braces),
        # so both are in one slot: the script may SPUBLISH to it from the stream's node.
        args: list[Any] = [self.name, data, self.maxlen]
        if sharded:
            args.append("S")
        _, receivers = self.scripts.publish_durable(keys=[keys.stream(self.name)], args=args)
        return int(receivers)


class Subscriber:
    """Receives messages from channels and patterns, reconnecting and re-subscribing by itself.

    Use it as an iterator (``for msg in sub``), poll it (``sub.get(timeout_s)``) or hand it a
    callback (``sub.run(callback)``, blocking until :meth:`close`).
    """

    def __init__(
        self,
        client: redis.Redis,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        durable: Iterable[str] = (),
        ping_interval_s: float = 5.0,
        pong_timeout_s: float = 3.0,
        outage: Outage | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.channels: set[str] = {keys.check_name(c, "channel") for c in channels}
        self.patterns: set[str] = set(patterns)
        self.durable: set[str] = {keys.check_name(c, "channel") for c in durable}
        self.channels |= self.durable
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.outage = outage or Outage("subscriber")
        self.clock = clock
        self._pubsub: PubSub | None = None
        self._sharded: bool | None = None  # decided on the first connect (cluster, Redis 7+)
        self._shards: ShardedSubscription | None = None
        self._last_id: dict[str, StreamId] = {}
        self._backlog: deque[ChannelMessage] = deque()
        self._last_ping = 0.0
        self._ping_outstanding: float | None = None
        self._closed = threading.Event()
        self._iterating = False

    @property
    def reconnects(self) -> int:
        return self.outage.reconnects

    def subscribe(self, *channels: str, durable: bool = False) -> None:
        """Add channels (durable ones replay what they miss while disconnected)."""
        new = {keys.check_name(c, "channel") for c in channels} - self.channels
        self.channels |= new
        if durable:
            self.durable |= new
        if self._shards is not None and new:
            self._shards.add(shard=new - CLASSIC_CHANNELS, classic=new & CLASSIC_CHANNELS)
        elif self._pubsub is not None and new:
            self._mark_positions(new & self.durable)
            self._pubsub.subscribe(*new)
            # What was published between the mark and the SUBSCRIBE is only in the stream.
            self._replay(new & self.durable)

    def unsubscribe(self, *channels: str) -> None:
        """Drop channels (from the thread that reads). A message already on its way may still
        arrive; on a sharded cluster the legs are rebuilt without them on the next read."""
        gone = set(channels) & self.channels
        self.channels -= gone
        self.durable -= gone
        for ch in gone:
            self._last_id.pop(ch, None)
        if self._shards is not None and gone:
            self._shards.close()  # the legs have no unsubscribe: the next get() rebuilds them
            self._shards = None
        elif self._pubsub is not None and gone:
            try:
                self._pubsub.unsubscribe(*gone)
            except CONNECTION_ERRORS:
                self._drop()  # the next get() reconnects with what is left

    def psubscribe(self, *patterns: str) -> None:
        new = set(patterns) - self.patterns
        self.patterns |= new
        if self._shards is not None and new:
            self._shards.add(patterns=new)
        elif self._pubsub is not None and new:
            self._pubsub.psubscribe(*new)

    # -- connection --------------------------------------------------------------------------
    def _connect(self) -> None:
        self._drop()
        # Mark where a new durable channel starts *before* subscribing: a message published
        # in between is then in the stream after the mark (and replayed below). Marked after
        # the SUBSCRIBE, its live copy would sit at or below the mark and be dropped as
        # "already replayed" although it never was.
        self._mark_positions({c for c in self.durable if c not in self._last_id})
        ps = self.client.pubsub(ignore_subscribe_messages=True)
        if self.channels:
            ps.subscribe(*sorted(self.channels))
        if self.patterns:
            ps.psubscribe(*sorted(self.patterns))
        if not self.channels and not self.patterns:
            ps.ping()  # forces the connection so errors surface here
        self._pubsub = ps
        self._last_ping = self.clock()
        self._ping_outstanding = None
        self._replay()

    def _drop(self) -> None:
        if self._shards is not None:
            self._shards.close()
            self._shards = None
        if self._pubsub is not None:
            # The connection may already be gone; there is nothing left to tell the server.
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._pubsub.reset()
            self._pubsub = None

    def _mark_positions(self, channels: Iterable[str]) -> None:
        """First subscription to a durable channel: replay starts from the stream's end now."""
        for ch in channels:
            last = cast(list[StreamEntry], self.client.xrevrange(keys.stream(ch), count=1))
            self._last_id[ch] = _parse_id(last[0][0]) if last else (0, 0)

    def _replay(self, channels: Iterable[str] | None = None) -> None:
        for ch in sorted(self.durable if channels is None else channels):
            start = self._last_id.get(ch, (0, 0))
            while True:
                entries = cast(list[StreamEntry], self.client.xrange(
                    keys.stream(ch), min=f"({start[0]}-{start[1]}", count=500))
                if not entries:
                    break
                for raw_id, fields in entries:
                    start = _parse_id(raw_id)
                    self._backlog.append(ChannelMessage(ch, fields[b"d"], None,
                                                        as_text(raw_id), replayed=True))
                self._last_id[ch] = start
            if self._backlog:
                log.info("subscriber: replayed %d message(s) missed on %s", len(self._backlog), ch)

    # -- receiving ---------------------------------------------------------------------------
    def get(self, timeout_s: float = 1.0) -> ChannelMessage | None:
        """The next message, or None after ``timeout_s``. Never raises on connection trouble."""
        if self._backlog:
            return self._backlog.popleft()
        if self._sharded is None:
            try:
                self._sharded = sharded_pubsub(self.client)  # no I/O unless a cluster
            except CONNECTION_ERRORS as exc:
                self.outage.failed(exc)
                return None
        if self._sharded:
            return self._get_sharded(timeout_s)
        try:
            if self._pubsub is None:
                self._connect()
                if self._backlog:
                    self.outage.succeeded()
                    return self._backlog.popleft()
            msg = self._poll(timeout_s)
        except _SUBSCRIBER_ERRORS as exc:
            self._drop()
            drop_idle_connections(self.client)  # the replay's connections: same dead path
            self.outage.failed(exc)
            return None
        self.outage.succeeded()
        return msg

    def _get_sharded(self, timeout_s: float) -> ChannelMessage | None:
        """:meth:`get` on a sharded cluster: the legs handle their own failures and backoff
        (one node down does not stop the others), and report to :attr:`outage`."""
        shards = self._shards
        if shards is None:
            shards = self._shards = ShardedSubscription(
                self.client, self.ping_interval_s, self.pong_timeout_s,  # type: ignore[arg-type]
                self.outage, self.clock, prepare=self._prepare, subscribed=self._subscribed)
            shards.add(shard=self.channels - CLASSIC_CHANNELS,
                       classic=self.channels & CLASSIC_CHANNELS, patterns=self.patterns)
        deadline = self.clock() + timeout_s
        while shards is self._shards:  # else close() dropped it meanwhile (another thread)
            if self._backlog:
                return self._backlog.popleft()
            raw = shards.poll(max(0.0, deadline - self.clock()))
            msg = self._convert(raw) if raw is not None else None
            if msg is not None:
                return msg
            if self.clock() >= deadline and not self._backlog:
                return None
        return None

    def _prepare(self, channels: set[str]) -> None:
        """Before a channel's SSUBSCRIBE: a new durable channel's replay starts here. (May run
        on a helper thread: membership tests only, no iteration over the shared sets.)"""
        self._mark_positions({c for c in channels if c in self.durable and c not in self._last_id})

    def _subscribed(self, channel: str) -> None:
        """The server confirmed the subscription: replay what the stream has beyond it."""
        if channel in self.durable:
            self._replay({channel})

    def _poll(self, timeout_s: float) -> ChannelMessage | None:
        assert self._pubsub is not None
        deadline = self.clock() + timeout_s
        while True:
            self._check_health()
            remaining = deadline - self.clock()
            wait_s = max(0.0, min(remaining, self.ping_interval_s, self.pong_timeout_s))
            raw = self._pubsub.get_message(timeout=wait_s)
            if raw is not None:
                msg = self._convert(raw)
                if msg is not None:
                    return msg
            if self.clock() >= deadline:
                return None

    def _check_health(self) -> None:
        now = self.clock()
        if self._ping_outstanding is not None:
            if now - self._ping_outstanding > self.pong_timeout_s:
                raise _PongMissing(f"no PONG within {self.pong_timeout_s} s")
        elif now - self._last_ping >= self.ping_interval_s:
            assert self._pubsub is not None
            self._pubsub.ping()
            self._last_ping = now
            self._ping_outstanding = now

    def _convert(self, raw: dict[str, Any]) -> ChannelMessage | None:
        kind = raw.get("type")
        # Only a PONG clears an outstanding PING: a busy channel must not hide a server that
        # stopped answering commands.
        if kind == "pong":
            self._ping_outstanding = None
            return None
        if kind not in ("message", "pmessage", "smessage"):
            return None
        channel = raw["channel"].decode() if isinstance(raw["channel"], bytes) else raw["channel"]
        pattern = raw.get("pattern")
        if isinstance(pattern, bytes):
            pattern = pattern.decode()
        data: bytes = raw["data"]
        if channel in self.durable and pattern is None:
            raw_id, _, body = data.partition(b"\n")
            try:
                sid = _parse_id(raw_id)
            except ValueError:
                # Not published through a durable Channel (e.g. a plain PUBLISH): deliver it
                # as it came instead of letting it break the subscriber.
                log.warning("subscriber: message on durable channel %s has no stream id", channel)
                return ChannelMessage(channel, data)
            if sid <= self._last_id.get(channel, (0, 0)):
                return None  # already delivered by replay
            self._last_id[channel] = sid
            return ChannelMessage(channel, body, None, raw_id.decode())
        return ChannelMessage(channel, data, pattern)

    def __iter__(self) -> Iterator[ChannelMessage]:
        self._iterating = True
        try:
            while not self._closed.is_set():
                msg = self.get(1.0)
                if msg is not None:
                    yield msg
        finally:
            self._iterating = False
            self._drop()

    def run(self, callback: Callable[[ChannelMessage], None]) -> None:
        """Call ``callback`` for each message until :meth:`close`; a failing callback is logged
        and does not stop the subscriber."""
        for msg in self:
            try:
                callback(msg)
            except Exception:
                log.exception("subscriber callback failed on %s", msg.channel)

    def close(self) -> None:
        """Stop. From another thread while ``run``/iteration reads, the reader drops the
        connection itself within a second (a socket must not vanish under a blocked read)."""
        self._closed.set()
        if not self._iterating:
            self._drop()
