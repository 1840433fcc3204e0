"""What becomes of a prodcons job's settled attempt in its worker: its slot freed, its
concurrency-limit slot given back, one log line, the worker's counters, the jobs that depend on
it released (``depends_on``), and progress reports while it runs. A base class of
:class:`~redisq.worker.prodcons.ProdconsWorker`, whose state it uses (set in its ``__init__``,
declared here for the type checker).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import redis

from ..backend import dependencies, workflows
from ..backend.connection import CONNECTION_OR_REPLY_ERRORS
from ..backend.pressure import MemoryPressure
from ..backend.records import SETTLE_DUPLICATE, SETTLE_FENCED, Records
from ..broker.consumer import Consumer
from ..execution import Reserved
from ..model import EXPIRED, SUCCEEDED, Outcome

log = logging.getLogger("redisq.worker")


class Outcomes:
    """Settled attempts: slots, limits, counters, log lines, dependents, progress."""

    client: redis.Redis
    records: Records
    consumer: Consumer
    pressure: MemoryPressure
    current: dict[str, dict[str, Any]]
    outcomes: Counter[str]
    processed: int
    failed: int
    _slots: threading.Condition
    _running: int
    _counts_lock: threading.Lock
    _awaited: dict[str, frozenset[str]]

    def release_limits(self, job: Reserved) -> None:
        raise NotImplementedError  # the worker's (see redisq.worker.control)

    def _settled(self, job: Reserved, outcome: Outcome, holds_slot: bool, answer: Any = 1) -> None:
        self.consumer.forget(job.message)
        self.release_limits(job)  # concurrency_limit: the slot back, one waiter woken
        if answer in (SETTLE_FENCED, SETTLE_DUPLICATE):
            self._log_refused(job, outcome, answer)
        else:
            self._count_and_log(job, outcome)
            if (job.env.id in self._awaited.get(job.message.queue, ())
                    and outcome.status in workflows.FINAL):
                self._release_dependents(job, outcome)  # without waiting for the next sweep
        if holds_slot:
            with self._slots:
                self._running -= 1
                self.current.pop(job.env.id, None)
                self._slots.notify()

    def _sweep_parents(self, q: str) -> int:
        """Jobs waiting on ``q``'s jobs (depends_on) whose parents ended: queued or cancelled
        here, by whichever worker comes first (idempotent). Parents still running are noted:
        settling one releases its dependents at once (see :meth:`_settled`)."""
        released, self._awaited[q] = dependencies.sweep_parents(
            self.client, self.records.scripts, q, self.records.status)
        return released

    def _release_dependents(self, job: Reserved, outcome: Outcome) -> None:
        try:
            dependencies.release_parent(self.client, self.records.scripts, job.message.queue,
                                     job.env.id, outcome.status)
        except CONNECTION_OR_REPLY_ERRORS as exc:  # the next sweep does it
            log.debug("job=%s: releasing its dependents failed: %s", job.env.id, exc)

    def _parked(self, job: Reserved) -> None:
        """``job``'s outcome waits in the recorder for its node: its slot is free for another
        job (its message stays held until the outcome is written)."""
        with self._slots:
            self._running -= 1
            self.current.pop(job.env.id, None)
            self._slots.notify()

    def _log_refused(self, job: Reserved, outcome: Outcome, answer: int) -> None:
        """A settle that recorded nothing: the job ran here, but its outcome is another's."""
        if answer == SETTLE_FENCED:
            log.warning("job=%s task=%s queue=%s %s not recorded: this worker's lease was lost "
                        "while it ran (the job was recovered for another worker, whose outcome "
                        "stands)", job.env.id, job.env.task, job.env.queue, outcome.status)
            self.consumer.lease_lost(job.message.queue, job.message.token or "")
        else:
            log.warning("job=%s task=%s queue=%s %s not recorded: another worker already "
                        "finished it (or retries it); its outcome stands", job.env.id,
                        job.env.task, job.env.queue, outcome.status)

    def _count_and_log(self, job: Reserved, outcome: Outcome) -> None:
        with self._counts_lock:  # pool threads and the recorder count at once
            self.outcomes[outcome.status] += 1
        if outcome.status == SUCCEEDED:
            self.processed += 1
            log.info("job=%s task=%s queue=%s succeeded duration_s=%.6f", job.env.id,
                     job.env.task, job.env.queue, outcome.duration_s)
            return
        if outcome.status == EXPIRED:  # not run: neither processed nor failed here
            log.warning("job=%s task=%s queue=%s expired, not run: %s", job.env.id,
                        job.env.task, job.env.queue, outcome.error_message)
            return
        self.failed += 1
        extra = f" retry_in_s={outcome.retry_in_s:.3f}" if outcome.retry_in_s else ""
        log.warning("job=%s task=%s queue=%s %s attempt=%d error=%s: %s%s", job.env.id,
                    job.env.task, job.env.queue, outcome.status, job.env.attempt,
                    outcome.error_type, outcome.error_message, extra)

    def _report_progress(self, job_id: str, fraction: float, message: str) -> None:
        info = self.current.get(job_id)
        if info is not None:
            try:
                self.records.report_progress(info["queue"], job_id, fraction, message)
            except redis.OutOfMemoryError as exc:  # progress is advisory: the job goes on
                self.pressure.refused("a progress report", exc)


__all__ = ["Outcomes"]
