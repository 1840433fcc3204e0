"""The pubsub worker: ``redisq worker --mode pubsub``. Every worker gets every message of its
channels and hands it to the ``@app.subscriber`` handler. A message that cannot be decoded (not
JSON, too large, too deep: anything its decoding raises), or whose handler raises, goes to the
channel's dead-letter list with the reason; the worker goes on."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backend import keys
from ..backend.connection import CONNECTION_ERRORS
from ..backend.dead import dead_entry
from ..broker.channel import ChannelMessage, Subscriber
from ..errors import ConfigError
from ..limits import MAX_DEPTH, decode, max_message_bytes, poison_reason
from .daemon import Daemon
from .pool import Pool

if TYPE_CHECKING:
    from ..app import App, SubscriberSpec
    from ..config import Settings
    from .notify import Notifier

log = logging.getLogger("redisq.worker")

STOP_CHECK_S = 0.2


class PubSubWorker(Daemon):
    mode = "pubsub"

    def __init__(self, app: App, settings: Settings, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(app, settings, notifier, clock)
        wanted = set(settings.channels) or set(app.subscribers)
        unknown = wanted - set(app.subscribers)
        if unknown:
            raise ConfigError(f"no @app.subscriber for channel(s): {', '.join(sorted(unknown))}")
        self.specs: dict[str, SubscriberSpec] = {c: app.subscribers[c] for c in sorted(wanted)}
        if not self.specs:
            raise ConfigError("pubsub mode needs at least one @app.subscriber channel")
        self.subscriber = Subscriber(
            self.client,
            channels=[c for c, s in self.specs.items() if not s.pattern and not s.durable],
            patterns=[c for c, s in self.specs.items() if s.pattern],
            durable=[c for c, s in self.specs.items() if s.durable],
            ping_interval_s=max(settings.block_timeout_s / 2, 0.1),
            pong_timeout_s=max(settings.block_timeout_s / 2, 0.1),
            outage=self.outage, clock=clock)
        self.max_message_bytes = max_message_bytes(app.max_message_bytes,
                                                   settings.max_message_bytes)
        self.pool = Pool(settings.concurrency, "redisq-handler")
        self.handled = 0
        self.failed = 0

    def describe(self) -> str:
        return f"channels={','.join(self.specs)}"

    def iterate(self) -> None:
        # A short local wait (no Redis traffic: PINGs keep their own interval), so that a
        # stop is seen within STOP_CHECK_S.
        msg = self.subscriber.get(min(self.settings.block_timeout_s, STOP_CHECK_S))
        if msg is not None:
            self.pool.submit(lambda: self.handle(msg))

    def handle(self, msg: ChannelMessage) -> None:
        spec = self.specs.get(msg.pattern or msg.channel)
        if spec is None:
            return
        try:
            payload = decode(self.app.serializer, msg.data, self.max_message_bytes, MAX_DEPTH)
        except Exception as exc:  # RecursionError, MemoryError too: the message's fault
            self._dead(msg, *poison_reason(exc))
            return
        try:
            spec.handler(payload)
        except Exception as exc:
            self._dead(msg, type(exc).__name__, f"{exc}\n{traceback.format_exc()}")
            return
        self.handled += 1
        log.info("channel=%s message handled id=%s", msg.channel, msg.id or "-")

    def _dead(self, msg: ChannelMessage, error_type: str, reason: str) -> None:
        self.failed += 1
        log.error("channel=%s message dead-lettered: %s: %s", msg.channel, error_type,
                  reason.splitlines()[0] if reason else "")
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(keys.channel_dead(msg.channel), dead_entry(
                msg.data, error_type, reason, keep_bytes=self.max_message_bytes))
            pipe.ltrim(keys.channel_dead(msg.channel), 0, self.settings.dead_max - 1)
            pipe.execute()
        except CONNECTION_ERRORS as exc:
            log.warning("channel=%s could not store dead letter: %s", msg.channel, exc)

    def state(self) -> dict[str, Any]:
        return {"channels": list(self.specs), "processed": self.handled, "failed": self.failed,
                "reconnects": self.subscriber.reconnects}

    def finish(self) -> bool:
        self.subscriber.close()
        self.pool.close()
        # Messages already received are handled within the grace period, as running jobs are
        # (a second signal cuts the wait short).
        deadline = self.clock() + self.settings.grace_s
        while not self.pool.join(0.1):
            if self.forced.is_set() or self.clock() >= deadline:
                log.warning("worker=%s handler(s) still running at stop", self.id)
                return False
        return not self.forced.is_set()
