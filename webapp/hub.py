"""One Redis subscription per web process, fanned out to its Server-Sent Events streams.

Each open stream is a :class:`Listener` with a bounded queue of its own. One daemon thread owns
a :class:`redisq.broker.channel.Subscriber` (one health-checked pub/sub connection that reconnects by
itself), subscribes to the channels the listeners want, drops the ones nobody wants any more,
and copies each message into the queues of that channel's listeners. So a hundred open
dashboards cost Redis one connection, not a hundred.

The listeners are capped (``web_max_streams``): each stream also holds a server thread, and an
unbounded number of them would starve the write routes (and, before, Redis's connection limit).
A listener too slow to keep up is marked ``overflowed``; its stream ends and the browser
reconnects, rather than the hub buffering without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from redisq.broker.channel import Subscriber

log = logging.getLogger("redisq.web")

POLL_S = 0.1  # how soon a new stream's channel is subscribed (the reader cannot be woken)
LINGER_S = 1.0  # keep the subscription this long after the last stream (reconnecting pages)
BACKLOG = 1000  # messages a listener may fall behind before its stream ends


class Listener:
    """One stream's view of the hub: the messages of ``channel``, in order."""

    def __init__(self, hub: Hub, channel: str) -> None:
        self.channel = channel
        self.overflowed = False
        self._hub = hub
        self._messages: queue.Queue[bytes] = queue.Queue(BACKLOG)
        self._closed = False

    def put(self, data: bytes) -> None:
        try:
            self._messages.put_nowait(data)
        except queue.Full:
            self.overflowed = True  # the stream ends; the browser reconnects and catches up

    def get(self, timeout_s: float) -> bytes | None:
        """The next message, or None after ``timeout_s``."""
        try:
            return self._messages.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            return None

    def close(self) -> None:
        """Give the slot back (idempotent: the stream's end and the response's close both call
        it, and a response closed before its body started runs only the latter)."""
        if not self._closed:
            self._closed = True
            self._hub._release(self)


class Hub:
    """The shared subscription of one web app (one per process in production)."""

    def __init__(self, client: Callable[[], Any], max_streams: int) -> None:
        self._client = client  # called in the hub thread: the App's client is made lazily
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}
        self._count = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def open_streams(self) -> int:
        return self._count

    def channels(self) -> set[str]:
        with self._lock:
            return set(self._listeners)

    def open(self, channel: str) -> Listener | None:
        """A listener on ``channel``, or None when ``max_streams`` are already open."""
        with self._lock:
            if self._count >= self.max_streams or self._stopped.is_set():
                return None
            listener = Listener(self, channel)
            self._listeners.setdefault(channel, set()).add(listener)
            self._count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="redisq-web-hub",
                                                daemon=True)
                self._thread.start()
        return listener

    def _release(self, listener: Listener) -> None:
        with self._lock:
            members = self._listeners.get(listener.channel)
            if members is None or listener not in members:
                return
            members.discard(listener)
            if not members:
                del self._listeners[listener.channel]
            self._count -= 1

    # -- the hub thread ---------------------------------------------------------------------
    def _run(self) -> None:
        sub: Subscriber | None = None
        subscribed: set[str] = set()
        idle_since: float | None = None
        try:
            while True:
                with self._lock:
                    wanted = set(self._listeners)
                    if self._stopped.is_set():
                        self._thread = None
                        return
                    if wanted:
                        idle_since = None
                    else:
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= LINGER_S:
                            self._thread = None  # the next open() starts a new thread
                            return
                try:
                    if sub is None:
                        sub = Subscriber(self._client(), ping_interval_s=2.0, pong_timeout_s=2.0)
                    if wanted != subscribed:
                        # PING deadlines below the streams' keepalive: a dead Redis is noticed
                        # within seconds and the subscriber reconnects (backoff capped at 2 s).
                        sub.unsubscribe(*(subscribed - wanted))
                        sub.subscribe(*(wanted - subscribed))
                        subscribed = wanted
                    if not subscribed:
                        time.sleep(POLL_S)
                        continue
                    msg = sub.get(POLL_S)  # never raises on connection trouble
                    if msg is not None:
                        self._dispatch(msg.channel, msg.data)
                except Exception as exc:  # a bug or an odd reply must not end every stream
                    log.warning("event hub: %s: %s; starting over", type(exc).__name__, exc)
                    if sub is not None:
                        sub.close()
                    sub, subscribed = None, set()
                    time.sleep(1.0)
        finally:
            if sub is not None:
                sub.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Drop the subscription now and open no more streams (the app is going away; tests
        call it so no subscription outlives its server)."""
        self._stopped.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _dispatch(self, channel: str, data: bytes) -> None:
        with self._lock:
            targets = list(self._listeners.get(channel, ()))
        for listener in targets:
            listener.put(data)
