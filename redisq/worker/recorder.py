"""Step 3 of the worker loop, batched: write how attempts ended.

Pool threads hand finished attempts to one recorder thread, which settles everything waiting
in a single pipelined round trip (one ``settle`` Lua step per job). Under load batches grow by
themselves (whatever finished during the previous round trip goes in the next one), so the
cost per job falls as the rate rises, and no job thread ever waits on Redis.

An outcome that cannot be written (on a cluster: its queue's node is down) is *parked*: it
frees its concurrency slot and waits here, retried with a backoff, until its node answers, so
a node that is down does not stop the worker from taking jobs of the other nodes' queues. Its
message stays held by the consumer meanwhile (never run again by this worker, and never given
back while its outcome is unwritten). A queue with ``cap`` parked outcomes is not reserved
from (see :meth:`Recorder.full`), which bounds what waits here.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from ..backend import workflows
from ..backend.backoff import Backoff
from ..backend.connection import CONNECTION_OR_REPLY_ERRORS

if TYPE_CHECKING:
    from ..backend.records import Records
    from ..execution import Reserved
    from ..model import Outcome

log = logging.getLogger("redisq.worker")

#: Called once an outcome is settled: the job, the outcome, whether it holds a slot, and what
#: ``settle`` answered (below 0: not recorded; see ``lua/settle.lua``).
Settled = Callable[["Reserved", "Outcome", bool, Any], None]
Item = tuple["Reserved", "Outcome", bool]  # an attempt's outcome; whether it holds a slot
RESTING_POLL_S = 0.25  # how often outcomes held back for a resting queue look again
RETRY_CAP_S = 0.5  # longest wait before outcomes that failed to be written are tried again


class Recorder:
    def __init__(self, records: Records, consumer_id: str, worker_id: str,
                 dumps: Callable[[Any], bytes], on_settled: Settled, forced: threading.Event,
                 max_batch: int = 256, resting: Callable[[str], bool] = lambda q: False,
                 on_parked: Callable[[Reserved], None] = lambda job: None,
                 cap: int = 8) -> None:
        """``resting(queue)``: the queue's node is known to be down (cluster), so its outcomes
        wait without being tried until it answers again. ``on_parked(job)``: ``job``'s outcome
        holds a slot and was not written: free the slot (it is not handed to ``on_settled``
        as holding one). ``cap``: parked outcomes per queue at which :meth:`full` says so."""
        self.records = records
        self.consumer_id = consumer_id
        self.worker_id = worker_id
        self.dumps = dumps
        self.on_settled = on_settled
        self.forced = forced
        self.max_batch = max_batch
        self.resting = resting
        self.on_parked = on_parked
        self.cap = cap
        self._parked: dict[str, int] = {}  # published by the recorder thread, read by others
        self._left: set[str] = set()  # queues of the outcomes close() could not write
        self._inbox: stdqueue.SimpleQueue[Item | None] = stdqueue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="redisq-recorder")
        self._thread.start()

    def put(self, job: Reserved, outcome: Outcome, holds_slot: bool) -> None:
        """Queue an attempt's outcome; ``holds_slot``: it occupies a concurrency slot until
        settled (so a stopping worker never releases a message whose outcome is unwritten)."""
        self._inbox.put((job, outcome, holds_slot))

    def full(self, queue: str) -> bool:
        """Whether ``queue`` has ``cap`` outcomes parked: reserve no more of its jobs until
        they are written (their node is down, or refuses them)."""
        return self._parked.get(queue, 0) >= self.cap

    def parked(self) -> int:
        """Outcomes waiting to be written after a failure, their slots freed."""
        return sum(self._parked.values())

    def close(self, timeout_s: float = 10.0) -> set[str] | None:
        """Settle what is queued, then stop. Returns the queues whose outcomes were left
        unwritten (a forced stop), or None while this thread is still at it (a call to a node
        that hangs): the messages of those jobs must not be given back, since the outcome
        may still be written."""
        self._inbox.put(None)
        self._thread.join(timeout_s)
        return None if self._thread.is_alive() else set(self._left)

    def _loop(self) -> None:
        # Outcomes not recorded yet, by queue: a failing queue (on a cluster, its node is down)
        # waits for its backoff while the other queues' outcomes are recorded as they come.
        waiting: dict[str, list[Item]] = {}
        due = 0.0
        # Capped low: outcomes parked for a node that was down are written (and their queue
        # drains again) within half a second of it answering; a queue known to rest is not
        # tried at all meanwhile (_hold_back), so a short cap costs little.
        backoff = Backoff(cap_s=RETRY_CAP_S)
        while True:
            batch, stop = self._next_batch(max(0.0, due - time.monotonic()) if waiting else None)
            if stop:
                self._finish([*batch, *(i for items in waiting.values() for i in items)], backoff)
                return
            if waiting and time.monotonic() >= due:
                batch += [i for items in waiting.values() for i in items]
                waiting = {}
            # A queue whose node is known to be down is not tried: the call would hang.
            batch = [item for item in batch if not self._hold_back(item, waiting)]
            failed = self._settle(batch) if batch else {}
            for q, items in failed.items():
                waiting.setdefault(q, []).extend(self._park(items))
            # Swapped whole, once waiting is whole again: other threads never see a queue's
            # parked outcomes drop to 0 while they are being retried.
            self._parked = {q: len(items) for q, items in waiting.items()}
            if failed:
                due = time.monotonic() + backoff.next_delay_s()
            elif batch:
                backoff.reset()
            if waiting and due <= time.monotonic():  # only held back: look again soon
                due = time.monotonic() + RESTING_POLL_S

    def _finish(self, items: list[Item], backoff: Backoff) -> None:
        """close(): record what is left, retrying after failures, until a forced stop."""
        while items:
            items = [i for group in self._settle(items).values() for i in group]
            if items and self.forced.wait(backoff.next_delay_s()):
                self._left = {i[0].message.queue for i in items}
                log.warning("%d outcome(s) not recorded; those jobs will run again", len(items))
                return
        self._parked = {}

    def _hold_back(self, item: Item, waiting: dict[str, list[Item]]) -> bool:
        q = item[0].message.queue
        if not self.resting(q):
            return False
        waiting.setdefault(q, []).extend(self._park([item]))
        return True

    def _park(self, items: list[Item]) -> list[Item]:
        """``items`` wait for their node: the slots they hold are freed now, not when they
        are written (a worker whose slots all waited for one node would take no other job)."""
        out = []
        for job, outcome, holds_slot in items:
            if holds_slot:
                try:
                    self.on_parked(job)
                except Exception:
                    log.exception("job=%s: freeing its slot failed", job.env.id)
            out.append((job, outcome, False))
        return out

    def _next_batch(self, timeout_s: float | None) -> tuple[list[Item], bool]:
        """What the pool threads handed in (waiting up to ``timeout_s`` for the first), and
        whether close() asked to stop."""
        try:
            first = self._inbox.get(timeout=timeout_s)
        except stdqueue.Empty:
            return [], False
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._inbox.get_nowait()
            except stdqueue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _settle(self, batch: list[Item]) -> dict[str, list[Item]]:
        """Record ``batch`` (one round trip); returns what could not be recorded, by queue.
        After a failure each queue is tried on its own: on a cluster only the queues of a
        node that is down are left."""
        try:
            self._record(batch)
            return {}
        except CONNECTION_OR_REPLY_ERRORS as exc:
            self._log_failure(batch, exc)
        by_queue: dict[str, list[Item]] = {}
        for item in batch:
            by_queue.setdefault(item[0].message.queue, []).append(item)
        if len(by_queue) == 1:
            return by_queue
        failed: dict[str, list[Item]] = {}
        for q, group in by_queue.items():
            try:
                self._record(group)
            except CONNECTION_OR_REPLY_ERRORS as exc:
                self._log_failure(group, exc)
                failed[q] = group
        return failed

    def _record(self, batch: list[Item]) -> None:
        # Workflow jobs move their workflow on BEFORE they are settled (acked): a worker lost
        # in between runs the job again, and these idempotent steps count nothing twice; the
        # other way round, a lost worker would leave a chord that never fires.
        wf_calls = [c for job, outcome, _ in batch if job.env.workflow is not None
                    for c in self._workflow_calls(job, outcome)]
        if wf_calls:
            workflows.run_end_calls(self.records.scripts, wf_calls)
        calls = [self.records.settle_call(self.consumer_id, job.message, job.env, outcome,
                                          self.worker_id, self.dumps)
                 for job, outcome, _ in batch]
        answers = self.records.settle_many(calls)
        for (job, outcome, holds_slot), answer in zip(batch, answers, strict=True):
            try:
                self.on_settled(job, outcome, holds_slot, answer)
            except Exception:
                log.exception("job=%s: after-settle step failed", job.env.id)

    def _workflow_calls(self, job: Reserved, outcome: Outcome) -> list[workflows.Call]:
        try:
            return workflows.end_calls(job.env, outcome, self.dumps)
        except Exception:  # e.g. a next step's message the serializer cannot encode
            log.exception("job=%s task=%s: its workflow cannot move on", job.env.id,
                          job.env.task)
            return []

    @staticmethod
    def _log_failure(batch: list[Item], exc: BaseException) -> None:
        # An error reply (OOM, READONLY during a failover) passes like an outage does; a
        # recorder thread that died here would leave every later job unsettled.
        if isinstance(exc, redis.ResponseError):
            log.error("%d outcome(s) not recorded yet: %s; retrying", len(batch), exc)
        else:
            log.debug("%d outcome(s) not recorded yet: %s; retrying", len(batch), exc)
