"""The prodcons worker: ``redisq worker --mode prodcons``.

Its main loop is three named steps: :meth:`Worker.reserve` (take up to one message per free
slot, in one round trip when they wait), :func:`redisq.execute.execute` (run the task; pure, no
Redis) in a pool thread, and :meth:`Worker.record` (settle the attempt in one Lua step).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis

from .connection import CONNECTION_ERRORS
from .consumer import Consumer
from .daemon import Daemon
from .execute import AsyncRunner, TimeLimiter, execute
from .index import WorkerIndex
from .job import DEAD, SUCCEEDED, TERMINAL, Envelope, JobContext
from .limits import JOB_WRAPPING, MAX_DEPTH, decode, max_message_bytes, poison_reason
from .pool import Pool
from .queue import Message, Queue
from .recorder import Recorder
from .records import SETTLE_DUPLICATE, SETTLE_FENCED, Outcome, dead_entry

if TYPE_CHECKING:
    from .app import App
    from .config import Settings
    from .notify import Notifier
    from .tasks import Task

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
TAKE_SHORT = 4
#: What a worker step outlives: connection trouble, and error replies that pass (OOM, MISCONF,
#: READONLY during a failover); a worker that exited on them would need a restart to recover.
PASSING_ERRORS = (*CONNECTION_ERRORS, redis.ResponseError)
#: Poison at least this large is dead-lettered by a thread of its own (one at a time), so the
#: jobs behind it do not wait for a round trip that carries it twice (a 16 MiB message: ~0.5 s).
BURY_ASIDE_BYTES = 1_048_576


@dataclass(frozen=True)
class Reserved:
    """A message that decoded into a runnable job."""

    message: Message
    env: Envelope
    task: Task


class Worker(Daemon):
    """Consumes ``settings.queues`` (priority order) with ``settings.concurrency`` threads."""

    mode = "prodcons"

    def __init__(self, app: App, settings: Settings, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(app, settings, notifier, clock)
        self.queues = list(settings.queues)
        self.concurrency = settings.concurrency
        self.max_message_bytes = max_message_bytes(app, settings)
        self.records = app.make_records(self.client)
        self.records.max_message_bytes = self.max_message_bytes  # its dead letters' cut
        self.consumer = Consumer(self.client, self.queues, consumer_id=self.id,
                                 lease_s=settings.lease_s, block_timeout_s=settings.block_timeout_s,
                                 dead_max=settings.dead_max, outage=self.outage, clock=clock,
                                 mark_jobs=self.id, pressure=self.pressure)
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
        self.consumer.skip = self.recorder.full
        # The queue index: refreshed for our queues, pruned of idle ones (see redisq.index).
        self.index = WorkerIndex(self.client, self.queues, max(
            settings.queue_idle_ttl_s, app.result_ttl_s, app.failure_ttl_s), clock)
        self.processed = 0
        self.failed = 0
        self.current: dict[str, dict[str, Any]] = {}
        self._slots = threading.Condition()
        self._running = 0
        self._last_promote = float("-inf")
        self._idle_passes = 0
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
        messages = self.reserve(free, 0.05 if burst else None)
        # A full batch means more are waiting: gather a few freed slots before the next
        # round trip, so batches stay large under load instead of shrinking to one job.
        self._backlog = len(messages) == free
        jobs = self.start(messages)
        for job in jobs:
            self._submit(job)
        if burst:
            self._check_burst_end(bool(jobs))

    def reserve(self, n: int, timeout_s: float | None = None) -> list[Message]:
        """Step 1: up to ``n`` messages (never raises on connection trouble or error replies)."""
        try:
            return self.consumer.reserve(n, timeout_s)
        except redis.ResponseError as exc:
            log.error("worker=%s could not reserve: %s", self.id, exc)
            self.consumer.recheck()  # a half-done reservation may have moved messages to us
            self.outage.failed(exc)  # backs off; the next good reserve ends the "outage"
            return []

    def start(self, messages: list[Message]) -> list[Reserved]:
        """Decode messages, dead-letter the ones that cannot run, and drop the ones whose job
        must not run again (a batch reservation marked them started and reported each job's
        status before; a blocking move's are marked here first: see :meth:`mark`)."""
        runnable = []
        for r in self.mark([r for r in map(self._decode, messages) if r is not None]):
            prev = r.message.before
            if prev in TERMINAL:
                log.info("job=%s task=%s skipped (already %s)", r.env.id, r.env.task, prev)
                self._ack_skipped(r)
                continue
            log.info("job=%s task=%s queue=%s started attempt=%d", r.env.id, r.env.task,
                     r.env.queue, r.env.attempt)
            runnable.append(r)
        return runnable

    def mark(self, jobs: list[Reserved]) -> list[Reserved]:
        """Mark jobs from a blocking move (or found as orphans) started before they run, and
        learn each one's status before. This round trip is on an idle worker's latency path
        because it is also the fence: a frozen worker may wake to the reply of a move the
        server made while it was stopped, for a job recovered and run elsewhere since; the
        mark is refused (its epoch ended) and the job does not run here. Jobs it refuses or
        cannot mark are dropped (an unmarked one stays in our processing list, and the orphan
        check delivers it again)."""
        unmarked = [j for j in jobs if j.message.before is None]
        if not unmarked:
            return jobs
        try:
            before = self.records.start(self.id, [j.env for j in unmarked], self.consumer.id,
                                        [j.message.token or "" for j in unmarked])
        except PASSING_ERRORS as exc:
            log.warning("could not mark %d job(s) started (%s); they will be taken again",
                        len(unmarked), exc)
            for j in unmarked:
                self.consumer.forget(j.message)
            self.consumer.recheck()
            return [j for j in jobs if j.message.before is not None]
        marked = {id(j): b for j, b in zip(unmarked, before, strict=True)}
        out = []
        for j in jobs:
            if id(j) not in marked:
                out.append(j)
            elif marked[id(j)] is None:
                log.warning("job=%s task=%s queue=%s not started: taken under a lease this "
                            "worker lost (recovered for another worker)", j.env.id, j.env.task,
                            j.env.queue)
                self.consumer.forget(j.message)
                self.consumer.lease_lost(j.message.queue, j.message.token or "")
            else:
                out.append(replace(j, message=replace(j.message, before=marked[id(j)])))
        return out

    def _decode(self, m: Message) -> Reserved | None:
        try:
            env = Envelope.from_dict(decode(self.app.serializer, m.body, self.max_message_bytes,
                                            MAX_DEPTH + JOB_WRAPPING))
        # Whatever a message makes the decoder raise (RecursionError, MemoryError, bad UTF-8,
        # wrong shape) is that message's fault: it is buried, the worker goes on.
        except Exception as exc:
            self._poison(m, *poison_reason(exc))
            return None
        if env.queue != m.queue:
            env = replace(env, queue=m.queue)
        task = self.app.tasks.get(env.task)
        if task is None:
            reason = f"unknown task {env.task!r}: not registered in this worker's app"
            self.record(Reserved(m, env, _UNKNOWN), Outcome(DEAD, error_type="UnknownTask",
                                                            error_message=reason))
            return None
        return Reserved(m, env, task)

    def _poison(self, m: Message, error_type: str, reason: str) -> None:
        """Dead-letter a message that cannot be a job. When it names a job id (as redisq
        writes it), that job's record says dead too: the reservation may have marked it
        started, and a producer may be waiting on it (e.g. a message over this worker's cap)."""
        found = _JOB_ID.match(m.body)
        if found is None or m.before in TERMINAL:  # a finished job's record stays as it is
            log.error("queue=%s dead-lettered a message (%d bytes): %s: %s", m.queue,
                      len(m.body), error_type, reason)
            if len(m.body) >= BURY_ASIDE_BYTES and self._burying.acquire(blocking=False):
                threading.Thread(target=self._bury_aside, args=(m, error_type, reason),
                                 name="redisq-bury", daemon=True).start()
            else:  # small, or one is already buried aside: here (which holds the loop back)
                self._bury_raw(m, error_type, reason)
            return
        env = Envelope(found.group(1).decode(), "", [], {}, m.queue)  # logged when settled
        self.record(Reserved(m, env, _UNKNOWN), Outcome(DEAD, error_type=error_type,
                                                        error_message=reason))

    def _bury_aside(self, m: Message, error_type: str, reason: str) -> None:
        try:
            self._bury_raw(m, error_type, reason)
        finally:
            self._burying.release()

    def _bury_raw(self, m: Message, error_type: str, reason: str) -> None:
        try:
            self.consumer.bury(m, dead_entry(m.body, error_type, reason,
                                             keep_bytes=self.max_message_bytes))
        except Exception as exc:  # Redis trouble, or no memory for a huge entry: try again later
            log.warning("queue=%s could not dead-letter (%s: %s); it will be retried", m.queue,
                        type(exc).__name__, exc)
            self.consumer.forget(m)
            self.consumer.recheck()

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
                             self._report_progress)
            outcome = execute(job.task, job.env, ctx, self.app.hooks, self.limiter, self.runner)
            if taken and not self.stopping.is_set():
                self.record(job, outcome, holds_slot=True)  # batched by the recorder
                job = taken.popleft()
                with self._slots:
                    self._track(job)
                continue
            try:
                job = self._record_and_take(job, outcome, taken)
            except Exception:
                # E.g. an error reply (OOM, READONLY after a failover). The recorder settles
                # again (settling twice is harmless) and frees the slot; messages taken in the
                # same round trip are found by the orphan check.
                log.exception("job=%s task=%s: could not settle with the next take", job.env.id,
                              job.env.task)
                self.consumer.recheck()
                self.record(job, outcome, holds_slot=True)
                job = None
        self._leave(taken)

    def _still_ours(self, job: Reserved) -> bool:
        """Whether ``job`` may start now. A job marked started may wait for its thread, and a
        worker frozen in between (SIGSTOP, a paused VM) may wake to find it recovered and run
        elsewhere. Free unless this thread was held up for most of a lease: then one round
        trip asks whether the epoch the job was reserved under still holds."""
        q, token = job.message.queue, job.message.token
        known = self.consumer.epoch_known(q, token)
        if known is None and token:
            try:
                known = self.consumer.epoch_holds(q, token)
            except PASSING_ERRORS as exc:
                log.warning("job=%s: could not check this worker's lease on queue %s (%s); "
                            "the job will be taken again", job.env.id, q, exc)
                return False
        if known is False:
            log.warning("job=%s task=%s queue=%s not started: this worker's lease was lost "
                        "(the job was recovered for another worker)", job.env.id, job.env.task,
                        job.env.queue)
        return known is not False

    def _abandon(self, job: Reserved) -> None:
        """Give up a job that must not start here: its slot and our hold of it (if its epoch
        still holds after all, it is in our processing list: the orphan check delivers it)."""
        self.consumer.forget(job.message)
        self.consumer.recheck()
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
        if self.stopping.is_set() or self.consumer.resting(job.message.queue):
            # Resting: its node is down; the recorder keeps the outcome and frees the slot.
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

    def _settled(self, job: Reserved, outcome: Outcome, holds_slot: bool, answer: Any = 1) -> None:
        self.consumer.forget(job.message)
        if answer in (SETTLE_FENCED, SETTLE_DUPLICATE):
            self._log_refused(job, outcome, answer)
        else:
            self._count_and_log(job, outcome)
        if holds_slot:
            with self._slots:
                self._running -= 1
                self.current.pop(job.env.id, None)
                self._slots.notify()

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

    def _ack_skipped(self, job: Reserved) -> None:
        try:
            self.consumer.ack([job.message])
        except PASSING_ERRORS:
            self.consumer.forget(job.message)

    def _count_and_log(self, job: Reserved, outcome: Outcome) -> None:
        if outcome.status == SUCCEEDED:
            self.processed += 1
            log.info("job=%s task=%s queue=%s succeeded duration_s=%.6f", job.env.id,
                     job.env.task, job.env.queue, outcome.duration_s)
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

    def _wait_for_slot(self) -> int:
        """Free slots, after waiting for one (or, with a backlog, briefly for half of them)."""
        with self._slots:
            if self._running >= self.concurrency:
                self._slots.wait(self.settings.block_timeout_s)
            if self._backlog:
                want = self.concurrency - max(self.concurrency // 2, 1)
                self._slots.wait_for(lambda: self._running <= want, BACKLOG_GATHER_S)
            return max(self.concurrency - self._running, 0)  # taken short jobs may exceed it

    def _check_burst_end(self, got: bool) -> None:
        if got or self._running or self.recorder.parked():  # parked: their node is down
            self._idle_passes = 0
            return
        self._idle_passes += 1
        if self._idle_passes < 2:
            return
        # Jobs already due in the delayed set count as waiting; later ones stay queued.
        promoted = sum(Queue(self.client, q, self.records.scripts).promote_due()
                       for q in self.queues)
        if not promoted and not any(Queue(self.client, q).depth() for q in self.queues):
            log.info("worker=%s burst: queues drained", self.id)
            self.stop()

    # -- supervisor --------------------------------------------------------------------------
    def interrupt(self) -> None:
        self.consumer.interrupt()
        with self._slots:  # a loop waiting for a free slot looks at `stopping` again
            self._slots.notify_all()

    def tick(self) -> None:
        self.limiter.enforce()  # also while stopping: running jobs keep their time limits
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
                except CONNECTION_ERRORS as exc:  # on a cluster: that queue's node; go on
                    log.debug("worker=%s could not promote queue %s: %s", self.id, q, exc)

    def maintain(self) -> None:
        self.consumer.heartbeat()
        self.consumer.requeue_stale()
        self.index.heartbeat()

    def state(self) -> dict[str, Any]:
        with self._slots:
            current = [{"id": k, **v} for k, v in self.current.items()]
        return {"queues": self.queues, "concurrency": self.concurrency,
                "processed": self.processed, "failed": self.failed, "current": current,
                "parked": self.recorder.parked(),  # outcomes waiting for a node that is down
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
            while ((self._running or self.recorder.parked()) and not self.forced.is_set()
                   and self.clock() < deadline):
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


class _UnknownTask:
    """Stands in for a task that is not registered, so its job can be settled as dead."""

    name = "<unknown>"


_UNKNOWN: Any = _UnknownTask()
#: A job id where redisq writes it (first; the pattern reserve.lua marks records by):
#: printable ASCII without quote or backslash (producers refuse those).
_JOB_ID = re.compile(rb'\{"id":"([!#-\[\]-~]{1,256})"')


def run_worker(app: App, settings: Settings) -> int:
    """Run the worker ``settings.mode`` asks for; returns the exit code."""
    if settings.mode == "pubsub":
        from .pubsub_worker import PubSubWorker

        if settings.with_scheduler:  # a shared env file may set it for every worker
            log.warning("with_scheduler is ignored in pubsub mode: run the scheduler in a "
                        "prodcons worker or as `redisq scheduler`")

        return PubSubWorker(app, settings).run()
    return Worker(app, settings).run()


__all__ = ["Pool", "Reserved", "Worker", "run_worker"]  # Pool: re-exported for old imports
