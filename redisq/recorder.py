"""Step 3 of the worker loop, batched: write how attempts ended.

Pool threads hand finished attempts to one recorder thread, which settles everything waiting
in a single pipelined round trip (one ``settle`` Lua step per job). Under load batches grow by
themselves (whatever finished during the previous round trip goes in the next one), so the
cost per job falls as the rate rises, and no job thread ever waits on Redis.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from .backoff import Backoff
from .connection import CONNECTION_ERRORS

if TYPE_CHECKING:
    from .records import Outcome, Records
    from .worker import Reserved

log = logging.getLogger("redisq.worker")

Settled = Callable[["Reserved", "Outcome", bool], None]


class Recorder:
    def __init__(self, records: Records, consumer_id: str, worker_id: str,
                 dumps: Callable[[Any], bytes], on_settled: Settled, forced: threading.Event,
                 max_batch: int = 256) -> None:
        self.records = records
        self.consumer_id = consumer_id
        self.worker_id = worker_id
        self.dumps = dumps
        self.on_settled = on_settled
        self.forced = forced
        self.max_batch = max_batch
        self._inbox: stdqueue.SimpleQueue[tuple[Reserved, Outcome, bool] | None] = (
            stdqueue.SimpleQueue())
        self._thread = threading.Thread(target=self._loop, daemon=True, name="redisq-recorder")
        self._thread.start()

    def put(self, job: Reserved, outcome: Outcome, holds_slot: bool) -> None:
        """Queue an attempt's outcome; ``holds_slot``: it occupies a concurrency slot until
        settled (so a stopping worker never releases a message whose outcome is unwritten)."""
        self._inbox.put((job, outcome, holds_slot))

    def close(self, timeout_s: float = 10.0) -> None:
        """Settle what is queued, then stop."""
        self._inbox.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._inbox.get_nowait()
                except stdqueue.Empty:
                    break
                if item is None:
                    self._settle(batch)
                    return
                batch.append(item)
            self._settle(batch)

    def _settle(self, batch: list[tuple[Reserved, Outcome, bool]]) -> None:
        calls = [self.records.settle_call(self.consumer_id, job.message, job.env, outcome,
                                          self.worker_id, self.dumps)
                 for job, outcome, _ in batch]
        backoff = Backoff(cap_s=2.0)
        while True:
            try:
                self.records.settle_many(calls)
                break
            except (*CONNECTION_ERRORS, redis.ResponseError) as exc:
                # An error reply (OOM, READONLY during a failover) passes like an outage does;
                # a recorder thread that died here would leave every later job unsettled.
                if isinstance(exc, redis.ResponseError):
                    log.error("%d outcome(s) not recorded yet: %s; retrying", len(batch), exc)
                if self.forced.is_set():
                    log.warning("%d outcome(s) not recorded (%s); those jobs will run again",
                                len(batch), exc)
                    break
                time.sleep(backoff.next_delay_s())
        for job, outcome, holds_slot in batch:
            try:
                self.on_settled(job, outcome, holds_slot)
            except Exception:
                log.exception("job=%s: after-settle step failed", job.env.id)
