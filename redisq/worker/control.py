"""The prodcons worker's share of job control: paused queues, the limits step before a
job runs, and aborting running jobs. A base class of
:class:`~redisq.worker.prodcons.ProdconsWorker`, whose state it uses.

- Paused queues are read every :data:`PAUSE_POLL_S` (one SMEMBERS); from then on no
  reservation names them, and a message a blocking wait still brings back from one is given
  back to the front of its queue unrun.
- A job of a task with ``rate_limit``/``concurrency_limit`` passes ``lua/gate.lua`` after its
  reservation: it starts, or its message goes to the delayed set (status ``throttled``). A
  concurrency slot is given back after the job's outcome is written (``lua/limit_release.lua``)
  and renewed at each heartbeat while the job runs.
- Abort requests are read for the running jobs (one EXISTS per job, one round trip) at each
  heartbeat and at least every :data:`ABORT_POLL_S` while jobs run; the job's context says
  ``aborted`` at once, and after ``abort_grace_s`` it is
  stopped like a time limit. A thread still inside a blocking C call (``time.sleep``, a socket
  read) :data:`ABANDON_AFTER_S` after that cannot be stopped by Python: its job is recorded
  ``aborted`` and its slot freed now, the pool replaces the thread, and whatever the call
  returns later is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backend import control
from ..backend.connection import CONNECTION_OR_REPLY_ERRORS
from ..broker.consumer import Consumer
from ..broker.queue import Queue
from ..execution import Reserved, TimeLimiter
from ..job import JobContext
from ..model import ABORTED, Message, Outcome
from .pool import Pool
from .waker import Waker

if TYPE_CHECKING:
    from ..app import App
    from ..backend.records import Records
    from ..config import Settings

log = logging.getLogger("redisq.worker")

PAUSE_POLL_S = 0.5  #: how soon a worker sees a queue paused or resumed
#: How soon a worker sees ``job.abort()`` for a job it runs (or at its heartbeat, if sooner).
ABORT_POLL_S = 1.0
ABANDON_AFTER_S = 0.1  #: after the forced stop, how long a job's thread may take to end


@dataclass
class _Running:
    job: Reserved
    ctx: JobContext
    thread_id: int
    force_at: float = float("inf")  # abort requested: when its grace ends
    forced_at: float | None = None
    abandoned: bool = False


class Control:
    """Pause, limits and abort for a prodcons worker."""

    app: App
    id: str
    settings: Settings
    client: Any
    records: Records
    consumer: Consumer
    limiter: TimeLimiter
    pool: Pool
    clock: Callable[[], float]

    def _init_control(self) -> None:
        self.paused: set[str] = set()
        self._paused_at = float("-inf")
        self._aborts_at = float("-inf")
        self._jobs: dict[str, _Running] = {}
        self._jobs_lock = threading.Lock()
        self._holds: set[str] = set()  # job ids holding a concurrency slot
        # A throttled job's queue is promoted when its slot comes, not at the next 0.5 s pass.
        self.waker = Waker(lambda q: Queue(self.client, q, self.records.scripts).promote_due())

    # -- hooks the worker calls -------------------------------------------------------------
    _slots: threading.Condition

    def record(self, job: Reserved, outcome: Outcome, holds_slot: bool = False) -> None:
        raise NotImplementedError  # the worker's: settle through the recorder

    def _track(self, job: Reserved) -> None:
        raise NotImplementedError  # the worker's: list it as running

    def _run(self, job: Reserved | None) -> None:
        raise NotImplementedError  # the worker's: a pool thread's work

    def _hand_off(self, taken: Iterable[Reserved]) -> None:
        """Jobs an abandoned thread took but cannot run (it was replaced) go to other
        threads (each already holds its slot)."""
        for nxt in taken:
            with self._slots:
                self._track(nxt)
            self.pool.submit(lambda nxt=nxt: self._run(nxt))  # type: ignore[misc]

    def unpaused(self, jobs: list[Reserved]) -> list[Reserved]:
        """A blocking wait begun before its queue was paused may still bring a message back:
        it goes back to the front of its queue, unrun and unmarked. (A batch reservation
        never names a paused queue; one that ran just before the pause was seen has marked
        its jobs started: they run.)"""
        if not self.paused:
            return jobs
        back = [j for j in jobs if j.env.queue in self.paused and j.message.before is None]
        for j in back:
            self._give_back(j.message)
        return [j for j in jobs if j not in back] if back else jobs

    def admit(self, jobs: list[Reserved]) -> list[Reserved]:
        """Pass the jobs of limited tasks through the gate (one round trip for all)."""
        gated = [j for j in jobs if j.task.options.limited]
        if not gated:
            return jobs
        return [j for j in jobs if not j.task.options.limited] + self._gate(gated)

    def _give_back(self, m: Message) -> None:
        try:
            self.consumer.nack(m, front=True)
        except CONNECTION_OR_REPLY_ERRORS as exc:  # the orphan check delivers it again
            log.warning("queue=%s paused: could not give a message back (%s)", m.queue, exc)
            self.consumer.forget(m)
            self.consumer.recheck()

    def _gate(self, jobs: list[Reserved]) -> list[Reserved]:
        now = f"{time.time():.3f}"
        lease_ms = int(self.settings.lease_s * 1000)
        calls = [control.gate_call(self.consumer.id, j.message.queue, j.env.task, j.env.id,
                                   j.message.body, j.message.token or "",
                                   j.task.options.rate_interval_ms,
                                   j.task.options.concurrency_limit or 0, lease_ms, now)
                 for j in jobs]
        try:
            answers = self.records.scripts.run_many(calls)
        except CONNECTION_OR_REPLY_ERRORS as exc:
            log.warning("could not pass %d limited job(s) through their limits (%s); they "
                        "will be taken again", len(jobs), exc)
            for j in jobs:
                self.consumer.forget(j.message)
            self.consumer.recheck()
            return []
        out = []
        for j, answer in zip(jobs, answers, strict=True):
            if answer == 0:
                if j.task.options.concurrency_limit:
                    self._holding(j)
                out.append(j)
                continue
            self.consumer.forget(j.message)
            if answer == -1:
                self.consumer.lease_lost(j.message.queue, j.message.token or "")
            elif answer > 0:
                self.waker.at(j.message.queue, answer / 1000)
                log.info("job=%s task=%s queue=%s throttled retry_in_s=%.3f", j.env.id,
                         j.env.task, j.env.queue, answer / 1000)
        return out

    def _holding(self, job: Reserved) -> None:
        with self._jobs_lock:
            self._holds.add(job.env.id)

    def release_limits(self, job: Reserved) -> None:
        """After ``job``'s outcome is written (or once it will not run here): its concurrency
        slot back (a failure leaves it to its lease)."""
        with self._jobs_lock:
            if job.env.id not in self._holds:
                return
            self._holds.discard(job.env.id)
        try:
            self.records.scripts.run(*control.release_call(job.message.queue, job.env.task,
                                                           job.env.id))
        except CONNECTION_OR_REPLY_ERRORS as exc:
            log.warning("job=%s task=%s: could not release its concurrency slot (%s); it "
                        "frees when its lease ends", job.env.id, job.env.task, exc)

    # -- running jobs -----------------------------------------------------------------------
    def running_begins(self, job: Reserved, ctx: JobContext) -> None:
        with self._jobs_lock:
            self._jobs[job.env.id] = _Running(job, ctx, threading.get_ident())

    def running_ends(self, job: Reserved, ctx: JobContext, outcome: Outcome) -> Outcome | None:
        """The outcome to record for a job that ran here (an abort turns any into
        ``aborted``); None when it was abandoned (already recorded: drop it)."""
        with self._jobs_lock:
            run = self._jobs.pop(job.env.id, None)
        if run is not None and run.abandoned:
            return None
        if ctx.aborted and outcome.status != ABORTED:
            how = ("stopped by itself" if outcome.status == "succeeded"
                   else f"ended with {outcome.error_type or outcome.status}")
            outcome = Outcome(ABORTED, None, "Aborted", f"aborted by request ({how})",
                              outcome.traceback, 0.0, outcome.duration_s)
        if ctx.aborted:
            with contextlib.suppress(*CONNECTION_OR_REPLY_ERRORS):  # else it expires
                control.clear_abort(self.client, job.env.queue, job.env.id)
        return outcome

    def control_beat(self) -> None:
        """Heartbeat: renew concurrency leases, read abort requests for running jobs (and the
        paused queues: the first heartbeat runs before the first reservation)."""
        self._refresh_paused()
        with self._jobs_lock:
            holders = [(r.job.env.queue, r.job.env.task, r.job.env.id)
                       for r in self._jobs.values() if r.job.env.id in self._holds]
        try:
            control.renew_holders(self.client, holders, int(self.settings.lease_s * 1000))
        except CONNECTION_OR_REPLY_ERRORS as exc:  # the next heartbeat tries again
            log.warning("worker=%s could not renew concurrency leases: %s", self.id, exc)
        self._read_aborts()

    def _read_aborts(self) -> None:
        """One round trip: which running jobs ``job.abort()`` asked to stop."""
        self._aborts_at = self.clock()
        with self._jobs_lock:
            fresh = [r for r in self._jobs.values() if not r.ctx.aborted]
        if not fresh:
            return
        try:
            flags = control.abort_flags(self.client, [(r.job.env.queue, r.job.env.id)
                                                      for r in fresh])
        except CONNECTION_OR_REPLY_ERRORS as exc:  # the next tick tries again
            log.debug("worker=%s could not read abort requests: %s", self.id, exc)
            return
        for r, flagged in zip(fresh, flags, strict=True):
            if flagged:
                self._abort(r)

    def _abort(self, run: _Running) -> None:
        grace = self.settings.abort_grace_s
        log.info("job=%s task=%s queue=%s abort requested; stopping within abort_grace_s=%.1f",
                 run.job.env.id, run.job.env.task, run.job.env.queue, grace)
        run.ctx.abort_requested = True
        run.force_at = self.clock() + grace
        if not run.job.task.is_async:
            self.limiter.abort(run.thread_id, grace)

    def control_tick(self) -> None:
        """Supervisor tick: forced stops of aborted jobs past their grace (no Redis), then
        the paused queues (kept as they were while Redis does not answer)."""
        now = self.clock()
        with self._jobs_lock:
            due = [r for r in self._jobs.values() if r.force_at <= now and not r.abandoned]
        for r in due:
            if r.forced_at is None:
                r.forced_at = now
                if r.ctx.on_force is not None:  # an async task: cancel it
                    r.ctx.on_force()
                else:  # (again: the thread may have been between watched calls at the request)
                    self.limiter.abort(r.thread_id, 0.0)
            elif now - r.forced_at >= ABANDON_AFTER_S:
                self._abandon_stuck(r)
        if now - self._paused_at >= PAUSE_POLL_S:
            self._refresh_paused()
        # Abort requests: at each heartbeat, and at least every ABORT_POLL_S while jobs run.
        if self._jobs and now - self._aborts_at >= ABORT_POLL_S:
            self._read_aborts()

    def _refresh_paused(self) -> None:
        self._paused_at = self.clock()
        try:
            paused = control.paused(self.client) & set(self.consumer.queues)
        except CONNECTION_OR_REPLY_ERRORS as exc:
            log.debug("worker=%s could not read the paused queues: %s", self.id, exc)
            return
        if paused != self.paused:
            log.info("worker=%s paused queues: %s", self.id, ",".join(sorted(paused)) or "-")
            self.paused = paused

    def _abandon_stuck(self, run: _Running) -> None:
        with self._jobs_lock:  # (it stays listed: running_ends, when it returns, drops it)
            if self._jobs.get(run.job.env.id) is not run:
                return  # it ended meanwhile: its own outcome is recorded
            run.abandoned = True
        log.warning("job=%s task=%s queue=%s did not stop (a blocking call in its thread): "
                    "recorded aborted, its thread is replaced", run.job.env.id,
                    run.job.env.task, run.job.env.queue)
        self.pool.replace(run.thread_id)
        self.record(run.job, Outcome(
            ABORTED, None, "Aborted", "aborted by request (its thread was blocked in a call "
            "that cannot be interrupted; abandoned)", "", 0.0, 0.0), holds_slot=True)
        with contextlib.suppress(*CONNECTION_OR_REPLY_ERRORS):  # else it expires
            control.clear_abort(self.client, run.job.env.queue, run.job.env.id)
