"""Background consumer/subscriber loops for fault tests."""

from __future__ import annotations

import threading
from collections import Counter

from redisq.channel import Subscriber
from redisq.consumer import Consumer


class ConsumerLoop(threading.Thread):
    """reserve → ack forever (until stop), counting every body it acked."""

    def __init__(self, consumer: Consumer, batch: int = 50) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.batch = batch
        self.seen: Counter[bytes] = Counter()
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.is_set():
            got = self.consumer.reserve(self.batch)
            if not got:
                continue
            try:
                self.consumer.ack(got)
            except Exception:  # acks are retried by redelivery; count what we processed
                self.consumer.recheck()
            with self.lock:
                self.seen.update(m.body for m in got)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class SubscriberLoop(threading.Thread):
    def __init__(self, sub: Subscriber) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.received: list[bytes] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            msg = self.sub.get(0.2)
            if msg is not None:
                self.received.append(msg.data)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        self.sub.close()
