"""Background consumer/subscriber loops and fault helpers for the fault tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

import redis

from redisq.backend.connection import CONNECTION_ERRORS
from redisq.broker.channel import ChannelMessage, Subscriber
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue


class ConsumerLoop(threading.Thread):
    """reserve → ack until stopped. ``seen`` counts bodies whose ack went through (an ack that
    failed on a connection error is retried: it is idempotent), ``delivered`` every body
    reserve handed out (a body delivered twice is a duplicate)."""

    def __init__(self, consumer: Consumer, batch: int = 50) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.batch = batch
        self.seen: Counter[bytes] = Counter()
        self.delivered: Counter[bytes] = Counter()
        self.ack_failures = 0
        self.last_delivery = 0.0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.is_set():
            got = self.consumer.reserve(self.batch)
            if not got:
                continue
            with self.lock:
                self.delivered.update(m.body for m in got)
                self.last_delivery = time.monotonic()
            while not self.stop_event.is_set():
                try:
                    self.consumer.ack(got)
                    break
                except CONNECTION_ERRORS:
                    self.ack_failures += 1
                    self.stop_event.wait(0.05)  # retry backoff
            else:
                return
            with self.lock:
                self.seen.update(m.body for m in got)

    def count(self) -> int:
        """Distinct bodies acknowledged so far."""
        with self.lock:
            return len(self.seen)

    def has_all(self, bodies: Iterable[bytes]) -> bool:
        with self.lock:
            return all(b in self.seen for b in bodies)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.delivered.values())

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class SubscriberLoop(threading.Thread):
    """get() until stopped, keeping every message received."""

    def __init__(self, sub: Subscriber) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.messages: list[ChannelMessage] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    @property
    def received(self) -> list[bytes]:
        with self.lock:
            return [m.data for m in self.messages]

    def run(self) -> None:
        while not self.stop_event.is_set():
            msg = self.sub.get(0.2)
            if msg is not None:
                with self.lock:
                    self.messages.append(msg)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        self.sub.close()


class Producer(threading.Thread):
    """Puts ``prefix<i>`` for i = 0.. until ``total`` or stopped, retrying a failed put (which
    may have run: a duplicate, allowed). ``acknowledged`` holds every body whose put
    returned: those must never be lost."""

    def __init__(self, client: redis.Redis, queue: str, total: int, prefix: str = "m",
                 chunk: int = 1) -> None:
        super().__init__(daemon=True)
        self.queue = Queue(client, queue)
        self.total = total
        self.prefix = prefix
        self.chunk = chunk
        self.acknowledged: list[bytes] = []
        self.failures = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while i < self.total and not self.stop_event.is_set():
            batch = [f"{self.prefix}{j}".encode() for j in range(i, min(i + self.chunk,
                                                                        self.total))]
            try:
                self.queue.put_many(batch)
            except CONNECTION_ERRORS:
                self.failures += 1
                self.stop_event.wait(0.02)
                continue
            self.acknowledged.extend(batch)
            i += len(batch)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def kill_clients(admin: redis.Redis, name_prefix: str, cmd: str | None = None) -> int:
    """CLIENT KILL every connection whose name starts with ``name_prefix`` (and, if given,
    whose current command is ``cmd``); returns how many were killed."""
    killed = 0
    for c in admin.client_list():
        if c.get("name", "").startswith(name_prefix) and (cmd is None or c.get("cmd") == cmd):
            killed += int(admin.client_kill_filter(_id=c["id"]))
    return killed


def blocked_in(admin: redis.Redis, name_prefix: str, cmd: str = "blmove") -> bool:
    """Whether a connection named ``name_prefix...`` is blocked in ``cmd`` right now."""
    return any(c.get("name", "").startswith(name_prefix) and c.get("cmd") == cmd
               and "b" in c.get("flags", "") for c in admin.client_list())
