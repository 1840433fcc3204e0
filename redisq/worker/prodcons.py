"""The prodcons worker: ``redisq worker --mode prodcons``.

Its main loop is three named steps: :meth:`ProdconsWorker.reserve` (take up to one message per free
slot, in one round trip when they wait), :func:`redisq.execution.execute` (run the task; pure, no
Redis) in a pool thread, and :meth:`ProdconsWorker.record` (settle the attempt in one Lua step).
When nothing waits, the loop lends a pool thread the blocking wait, and that thread runs the job
it brings (an idle worker's job starts one round trip after its enqueue, with no hand-off).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from ..backend.connection import CONNECTION_ERRORS, CONNECTION_OR_REPLY_ERRORS
from ..backend.index import WorkerIndex
from ..broker.consumer import Consumer
from ..broker.queue import Queue
from ..config import queue_weights
from ..execution import AsyncRunner, Reserved, TimeLimiter, execute
from ..job import JobContext
from ..limits import max_message_bytes
from ..model import Message, Outcome
from .burst import Burst
from .control import Control
from .daemon import Daemon
from .intake import Intake
from .outcomes import Outcomes
from .pool import Pool
from .recorder import Recorder

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings
    from .notify import Notifier

log = logging.getLogger("redisq.worker")

PROMOTE_EVERY_S = 0.5
BACKLOG_GATHER_S = 0.002  # longest wait for more free slots while messages are waiting
#: Short jobs under a backlog: a pool thread whose job took less than SHORT_JOB_S, while every
#: slot is busy, takes up to TAKE_SHORT jobs in its settle+take round trip and runs them one
#: after the other (their outcomes settle through the recorder, batched), so a cheap job does
#: not cost a round trip of its own. Bounded so it cannot hold jobs from idle threads (it only
#: happens when none is idle) or delay them much (TAKE_SHORT - 1 jobs wait, behind jobs that
#: were short). While they wait their records already say "started" (from the take); the
#: settle then writes the real start time.
SHORT_JOB_S = 0.002
#: How much longer than a blocking wait the loop waits for a pool thread's wait to end.
LEAD_SLACK_S = 1.0
TAKE_SHORT = 4
#: What a worker step outlives: connection trouble, and error replies that pass (OOM, MISCONF,
#: READONLY during a failover); a worker that exited on them would need a restart to recover.
PASSING_ERRORS = CONNECTION_OR_REPLY_ERRORS


class ProdconsWorker(Control, Intake, Outcomes, Daemon):
    """Consumes ``settings.queues`` (priority order) with ``settings.concurrency`` threads."""

    mode = "prodcons"

    def __init__(self, app: App, settings: Settings, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(app, settings, notifier, clock)
        names, weights = queue_weights(settings.queues)  # high:5,default:1: weighted
        self.queues = list(names)
        self._init_control()
        self.concurrency = settings.concurrency
        self.max_message_bytes = max_message_bytes(app.max_message_bytes,
                                                   settings.max_message_bytes)
        self.records = app.make_records(self.client)
        self.records.max_message_bytes = self.max_message_bytes  # its dead letters' cut
        self.consumer = Consumer(self.client, self.queues, consumer_id=self.id,
                                 lease_s=settings.lease_s, block_timeout_s=settings.block_timeout_s,
                                 dead_max=settings.dead_max, outage=self.outage, clock=clock,
                                 mark_jobs=self.id, pressure=self.pressure, weights=weights)
        self.limiter = TimeLimiter()
        self.runner = AsyncRunner() if any(t.is_async for t in app.tasks.values()) else None
        self.pool = Pool(self.concurrency, "redisq-job")
        # An outcome waiting for its node (cluster: the node is down) frees its slot, so the
        # worker goes on with the other nodes' queues; a queue stops being reserved from once
        # `concurrency` of its outcomes wait (what waits stays bounded).
        self.recorder = Recorder(self.records, self.consumer.id, self.id,
                                 app.serializer.dumps, self._settled, self.forced,
                                 resting=self.consumer.resting, on_parked=self._parked,
                                 cap=self.concurrency)
        self.consumer.skip = lambda q: q in self.paused or self.recorder.full(q)
        # The queue index: refreshed for our queues, pruned of idle ones (see redisq.index).
        self.index = WorkerIndex(self.client, self.queues, max(
            settings.queue_idle_ttl_s, app.result_ttl_s, app.failure_ttl_s), clock)
        self.processed = 0
        self.failed = 0
        self.current: dict[str, dict[str, Any]] = {}
        self._slots = threading.Condition()
        self._running = 0
        self._waiters = 0  # pool threads in a wait for the next job (see _lead_a_wait)
        self._last_promote = float("-inf")
        self._awaited: dict[str, frozenset[str]] = {}  # per queue: parents seen running
        # Deferred jobs whose parents are over (depends_on) count as waiting work too: the
        # burst's end check sweeps for them as it promotes due jobs.
        self.burst = Burst([Queue(self.client, q, self.records.scripts) for q in self.queues],
                           app.serializer.loads, clock,
                           release=lambda: sum(self._sweep_parents(q) for q in self.queues))
        #: Recorded attempts by outcome status (succeeded, retrying, dead, failed...).
        self.outcomes: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._backlog = False
        self._burying = threading.Semaphore(1)  # at most one big poison message buried aside
        self.scheduler = None
        if settings.with_scheduler:
            from .scheduler import Scheduler

            self.scheduler = Scheduler(app, lease_s=settings.lease_s, client=self.client)

    def describe(self) -> str:
        return f"queues={','.join(self.queues)} concurrency={self.concurrency}"

    # -- the loop ----------------------------------------------------------------------------
    def iterate(self) -> None:
        free = self._wait_for_slot()
        if free == 0 or self.stopping.is_set():
            return
        burst = self.settings.burst
        alone = not burst and self.consumer.can_wait_alone()
        messages = self.reserve(free, 0 if alone else 0.05 if burst else None)
        if alone and not messages:
            self._lead_a_wait()
            return
        # A full batch means more are waiting: gather a few freed slots before the next
        # round trip, so batches stay large under load instead of shrinking to one job.
        self._backlog = len(messages) == free
        jobs = self.start(messages)
        for job in jobs:
            self._submit(job)
        if burst:
            self._check_burst_end(bool(jobs))

    def _lead_a_wait(self) -> None:
        """The queue is empty: a pool thread waits for the next job and runs it itself, so
        an idle worker's job starts on the thread that received it (a hand-over to another
        thread costs ~0.1 ms of wake-up). This loop waits for that wait to end (a job came,
        or it timed out) before it reserves again."""
        with self._slots:
            self._waiters += 1  # holds a slot (a pool thread) until it ends or brings a job
        self.pool.submit(self._wait_and_run)
        with self._slots:
            self._slots.wait_for(lambda: not self._waiters or self.stopping.is_set(),
                                 self.settings.block_timeout_s + LEAD_SLACK_S)

    def _wait_and_run(self) -> None:
        jobs: list[Reserved] = []
        try:
            jobs = self.start(self._wait())
        finally:
            with self._slots:
                self._waiters -= 1
                self._running += bool(jobs)  # its slot passes to the first job
                self._slots.notify_all()
        if jobs:
            first, *more = jobs
            with self._slots:
                self._track(first)
            for job in more:  # (a claimed wait brings one job)
                self._submit(job)
            self._run(first)

    def _wait(self) -> list[Message]:
        try:
            return self.consumer.wait()
        except redis.ResponseError as exc:  # as in reserve()
            log.error("worker=%s could not wait for a job: %s", self.id, exc)
            self.consumer.recheck()
            self.outage.failed(exc)
            return []

    def reserve(self, n: int, timeout_s: float | None = None) -> list[Message]:
        """Step 1: up to ``n`` messages (never raises on connection trouble or error replies)."""
        try:
            return self.consumer.reserve(n, timeout_s)
        except redis.ResponseError as exc:
            log.error("worker=%s could not reserve: %s", self.id, exc)
            self.consumer.recheck()  # a half-done reservation may have moved messages to us
            self.outage.failed(exc)  # backs off; the next good reserve ends the "outage"
            return []

    def _submit(self, job: Reserved) -> None:
        with self._slots:
            self._running += 1
            self._track(job)
        self.pool.submit(lambda: self._run(job))

    def _track(self, job: Reserved) -> None:
        self.current[job.env.id] = {"task": job.env.task, "queue": job.env.queue,
                                    "started_at": round(time.time(), 3)}

    def _run(self, job: Reserved | None) -> None:
        """A pool thread's work: execute (pure), then record the outcome and take the next
        job in the same round trip, for as long as jobs are waiting. Under load no job waits
        for the main loop, and a job costs two round trips: its outcome+next, and its own
        (short jobs under a backlog share one: see SHORT_JOB_S)."""
        taken: deque[Reserved] = deque()  # taken with the last round trip, not started yet
        while job is not None:
            if not self._still_ours(job):
                self._abandon(job)
                job = taken.popleft() if taken else None
                if job is not None:
                    with self._slots:
                        self._track(job)
                continue
            ctx = JobContext(job.env.id, job.env.task, job.env.queue, job.env.attempt,
                             self._report_progress, job.env.headers)
            self.running_begins(job, ctx)
            ran = execute(job.task, job.env, ctx, self.app.hooks, self.limiter, self.runner)
            self._ran(job)
            outcome = self.running_ends(job, ctx, ran)  # job.abort(): "aborted"
            if outcome is None:  # abandoned (see redisq.worker.control): recorded already
                self._hand_off(taken)
                return
            if taken and not self.stopping.is_set():
                self.record(job, outcome, holds_slot=True)  # batched by the recorder
                job = taken.popleft()
                with self._slots:
                    self._track(job)
                continue
            current = job
            try:
                job = self._record_and_take(current, outcome, taken)
            except Exception:
                # E.g. an error reply (OOM, READONLY after a failover). The recorder settles
                # again (settling twice is harmless) and frees the slot; messages taken in the
                # same round trip are found by the orphan check.
                log.exception("job=%s task=%s: could not settle with the next take",
                              current.env.id, current.env.task)
                self.consumer.recheck()
                self.record(current, outcome, holds_slot=True)
                job = None
        self._leave(taken)

    def _ran(self, job: Reserved) -> None:
        """Called in the job's thread as soon as it has run, before its outcome is written
        (which the recorder may batch): a supervisor's child counts its jobs here."""

    def _abandon(self, job: Reserved) -> None:
        """Give up a job that must not start here: its slot and our hold of it (if its epoch
        still holds after all, it is in our processing list: the orphan check delivers it)."""
        self.consumer.forget(job.message)
        self.consumer.recheck()
        self.release_limits(job)
        with self._slots:
            self._running -= 1
            self.current.pop(job.env.id, None)
            self._slots.notify()

    def _leave(self, taken: deque[Reserved]) -> None:
        """Stopping with taken jobs not started: free their slots. They stay in this worker's
        processing list, which the consumer gives back to the queue when it closes."""
        if taken:
            log.info("worker=%s %d taken job(s) not started; they go back to the queue",
                     self.id, len(taken))
            for job in taken:
                self.release_limits(job)
            with self._slots:
                self._running -= len(taken)
                self._slots.notify_all()

    def _take_size(self, outcome: Outcome) -> int:
        if outcome.duration_s >= SHORT_JOB_S:
            return 1
        with self._slots:
            return TAKE_SHORT if self._running >= self.concurrency else 1

    def _record_and_take(self, job: Reserved, outcome: Outcome,
                         taken: deque[Reserved]) -> Reserved | None:
        if (self.stopping.is_set() or self.consumer.resting(job.message.queue)
                or job.env.workflow is not None):
            # Resting: its node is down; the recorder keeps the outcome and frees the slot.
            # A workflow job: the recorder moves its workflow on before it settles it.
            self.record(job, outcome, holds_slot=True)
            return None
        call = self.records.settle_call(self.consumer.id, job.message, job.env, outcome, self.id,
                                        self.app.serializer.dumps)
        try:
            (answer,), messages = self.consumer.take_with([call], self._take_size(outcome))
        except CONNECTION_ERRORS:
            # The recorder retries the outcome; a message the lost reply may have moved to
            # us is found by the main loop's orphan check.
            self.consumer.recheck()
            self.record(job, outcome, holds_slot=True)
            return None
        nxt = self.start(messages)
        with self._slots:
            self.current.pop(job.env.id, None)
            if nxt:
                self._track(nxt[0])
                self._running += len(nxt) - 1  # the finished job's slot passes to nxt[0]
        taken.extend(nxt[1:])
        self._settled(job, outcome, not nxt, answer)
        return nxt[0] if nxt else None

    def record(self, job: Reserved, outcome: Outcome, holds_slot: bool = False) -> None:
        """Step 3: settle the attempt (record + message move, one Lua step), batched by the
        recorder thread; if we stop first, the lease hands the message to another worker."""
        self.recorder.put(job, outcome, holds_slot)

    def _ack_skipped(self, job: Reserved) -> None:
        try:
            self.consumer.ack([job.message])
        except PASSING_ERRORS:
            self.consumer.forget(job.message)

    def _wait_for_slot(self) -> int:
        """Free slots, after waiting for one (or, with a backlog, briefly for half of them)."""
        with self._slots:
            if self._running + self._waiters >= self.concurrency:
                self._slots.wait(self.settings.block_timeout_s)
            if self._backlog:
                want = self.concurrency - max(self.concurrency // 2, 1)
                self._slots.wait_for(lambda: self._running <= want, BACKLOG_GATHER_S)
            # (Taken short jobs may exceed it.)
            return max(self.concurrency - self._running - self._waiters, 0)

    def _check_burst_end(self, got: bool) -> None:
        # parked: their node is down; waker: jobs a limit sent to wait for their slot
        if got or self._running or self.recorder.parked() or self.waker.pending():
            self.burst.busy()
        elif self.burst.done():
            log.info("worker=%s burst: queues drained", self.id)
            self.stop()

    # -- supervisor --------------------------------------------------------------------------
    def interrupt(self) -> None:
        self.consumer.interrupt()
        with self._slots:  # a loop waiting for a free slot looks at `stopping` again
            self._slots.notify_all()

    def tick(self) -> None:
        self.limiter.enforce()  # also while stopping: running jobs keep their time limits
        self.control_tick()  # aborted jobs past their grace; paused queues
        self.consumer.probe_resting()  # also with every slot busy (see probe_resting)
        if self.scheduler is not None and not self.stopping.is_set():  # resigned at stop
            self.scheduler.tick()  # also promotes due delayed jobs of every queue
        now = self.clock()
        if now - self._last_promote >= PROMOTE_EVERY_S:
            self._last_promote = now
            for q in self.queues:
                if self.consumer.resting(q):  # its node failed: the consumer probes it
                    continue
                try:
                    Queue(self.client, q, self.records.scripts).promote_due()
                    self._sweep_parents(q)
                except CONNECTION_ERRORS as exc:  # on a cluster: that queue's node; go on
                    log.debug("worker=%s could not promote queue %s: %s", self.id, q, exc)

    def maintain(self) -> None:
        self.consumer.heartbeat()
        self.consumer.requeue_stale()
        self.index.heartbeat()
        self.control_beat()  # abort requests; concurrency leases (never raises)

    def state(self) -> dict[str, Any]:
        with self._slots:
            current = [{"id": k, **v} for k, v in self.current.items()]
        return {"queues": self.queues, "concurrency": self.concurrency,
                "processed": self.processed, "failed": self.failed, "current": current,
                "parked": self.recorder.parked(),  # outcomes waiting for a node that is down
                "paused": sorted(self.paused),  # queues it takes nothing from
                **({"leading": self.scheduler.leading} if self.scheduler is not None else {})}

    # -- stopping ----------------------------------------------------------------------------
    def finish(self) -> bool:
        if self.scheduler is not None:  # hand the lease over now, not when it runs out
            try:
                self.scheduler.resign()
            except CONNECTION_ERRORS as exc:
                log.info("worker=%s could not resign the scheduler lease (%s)", self.id, exc)
        deadline = self.clock() + self.settings.grace_s
        with self._slots:  # parked outcomes too: their node may be back within the grace
            # A pool thread's wait (interrupted by now) may still bring a job: it runs, and
            # its message must not be given back under it.
            while ((self._running or self._waiters or self.recorder.parked())
                   and not self.forced.is_set() and self.clock() < deadline):
                self._slots.wait(0.1)
            left = self._running
        if left:
            log.warning("worker=%s %d job(s) still running at stop; giving them back", self.id,
                        left)
        if self._burying.acquire(timeout=max(deadline - self.clock(), 1.0)):
            self._burying.release()  # no poison is being buried aside any more
        self.end_supervisor()  # leases were renewed until now; from here they are given back
        # A message whose outcome is unwritten is not given back: its lease runs out instead.
        self.consumer.close(release=True, keep=self.recorder.close())
        self.pool.close()
        if self.runner is not None:
            self.runner.close()
        return left == 0 and not self.forced.is_set()


#: The name this class had when it was the only worker (tests and users import it).
Worker = ProdconsWorker

__all__ = ["ProdconsWorker", "Reserved", "Worker"]
