"""Eager mode: ``App(url, eager=True)`` (or ``REDISQ_EAGER=1``) runs each enqueued job inline,
in the caller's thread, and returns it finished: Celery's ``task_always_eager``, RQ's
``is_async=False``. For tests: no Redis is needed at all.

The job goes through what a worker would do to it, so a test fails where production would:
the call is validated and encoded by the producer's own code (:meth:`App.prepare`: arguments
the task cannot take, values JSON cannot carry, messages over the size cap), the message is
decoded back within the worker's limits, the task runs through the worker's execute step
(:func:`redisq.execution.execute`: hooks, ``current_job()``, ``bind=True``, typed arguments,
the result's JSON encoding), and a failed attempt is retried by the task's retry policy, each
retry's message encoded and decoded again. Retry delays are skipped, not slept, and counted
in the job's record (``skipped_delays``, ``skipped_delay_s``).

What differs from a worker: ``delay_s``/``eta`` are ignored (the job runs now); ``unique_by``
is not checked (a job is finished before the next call can see it); pub/sub, locks and the
queue statistics still need Redis. ``timeout_s`` holds as in a worker: a sync task past it is
stopped by an exception raised in the caller's thread (at its next Python bytecode, so a call
blocked in C, such as ``time.sleep``, ends first). With ``eager_raise=True`` (the default, Celery's
``task_eager_propagates``) a job that ends failed or dead raises the task's exception to the
caller once its retries are spent; with ``eager_raise=False`` the failure is recorded and
``job.result()`` raises :class:`~redisq.errors.JobFailed`, as it would with a worker.

Records live in memory in the App (:class:`EagerRecords`), the newest ``max_records`` kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import JobFailed, UnknownTask
from .execution import TimeLimiter, execute, timeout_of
from .job import Job, JobContext
from .limits import JOB_WRAPPING, MAX_DEPTH, decode, headers_json, poison_reason
from .model import DEAD, RETRYING, STARTED, SUCCEEDED, Envelope, Outcome

if TYPE_CHECKING:
    from .middleware import Hooks
    from .producer import Prepared
    from .serializers import Serializer
    from .tasks import AnyTask

log = logging.getLogger("redisq.eager")

#: Records an eager App keeps (the oldest are forgotten first): bounded, so a long test
#: session or an eager development server does not grow without end.
MAX_RECORDS = 100_000
#: How often the time limits of running eager sync jobs are checked (a worker: 0.25 s).
WATCH_EVERY_S = 0.02


class EagerRecords:
    """Job records of an eager App, in memory: the same fields, as text, that
    :class:`~redisq.backend.records.Records` reads from Redis (a :class:`Job` reads either)."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self._lock = threading.Lock()
        self._records: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def get(self, queue: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._records.get((queue, job_id), {}))

    def status(self, queue: str, job_id: str) -> str | None:
        with self._lock:
            record = self._records.get((queue, job_id))
            return None if record is None else record.get("status")

    def cancel(self, queue: str, job_id: str) -> bool:
        """Always False: an eager job has run by the time anyone holds its handle."""
        return False

    def find_queue(self, job_id: str) -> str | None:
        with self._lock:
            return next((q for q, jid in reversed(self._records) if jid == job_id), None)

    def update(self, queue: str, job_id: str, **fields: Any) -> None:
        """Set fields of a record (created if new), as text, as Redis would keep them."""
        with self._lock:
            record = self._records.setdefault((queue, job_id), {"id": job_id, "queue": queue})
            record.update({k: v if isinstance(v, str) else _text(v) for k, v in fields.items()})
            self._records.move_to_end((queue, job_id))
            while len(self._records) > self.max_records:
                self._records.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _text(value: Any) -> str:
    return repr(round(value, 6)) if isinstance(value, float) else str(value)


class _Watchdog:
    """The time limits of an eager App's running sync jobs: one thread, started at the first
    such job, enforces them (what a worker's supervisor thread does) while any runs; a
    thread per job would cost more than the job."""

    def __init__(self) -> None:
        self.limiter = TimeLimiter()
        self._lock = threading.Lock()
        self._running = 0
        self._active = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Watchdog:
        with self._lock:
            self._running += 1
            self._active.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="redisq-eager-limits")
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._running -= 1
            if not self._running:
                self._active.clear()

    def _loop(self) -> None:
        while self._active.wait():
            self.limiter.enforce()
            time.sleep(WATCH_EVERY_S)


class EagerRunner:
    """Runs an eager App's jobs inline (see the module docstring)."""

    def __init__(self, tasks: dict[str, AnyTask], hooks: Hooks, serializer: Serializer,
                 max_bytes: Callable[[], int], raise_failures: bool = True,
                 records: EagerRecords | None = None) -> None:
        self.tasks = tasks
        self.hooks = hooks
        self.serializer = serializer
        self.max_bytes = max_bytes
        self.raise_failures = raise_failures
        self.records = records or EagerRecords()
        self._watchdog = _Watchdog()

    def run(self, prepared: Prepared) -> Job[Any]:
        """Run the prepared call to its end; returns the finished :class:`Job`, or raises the
        task's exception (``raise_failures``) once its retries are spent."""
        env = prepared.env
        self.records.update(env.queue, env.id, task=env.task, status=STARTED, attempts="0",
                            enqueued_at=env.enqueued_at,
                            **({"headers": headers_json(env.headers)} if env.headers else {}))
        try:  # decoded as a worker decodes a reserved message
            env = self._decode(prepared.message, env.queue)
        except Exception as exc:
            error_type, reason = poison_reason(exc)
            return self._settle(prepared.env, Outcome(DEAD, error_type=error_type,
                                                      error_message=reason), None)
        task = self.tasks.get(env.task)
        if task is None:
            reason = f"unknown task {env.task!r}: not registered in this app"
            return self._settle(env, Outcome(DEAD, error_type="UnknownTask", error_message=reason),
                                UnknownTask(reason))
        skipped, skipped_s = 0, 0.0
        while True:
            ctx = JobContext(env.id, env.task, env.queue, env.attempt, self._progress(env),
                             env.headers)
            self.records.update(env.queue, env.id, started_at=time.time(), attempts=env.attempt)
            log.info("job=%s task=%s queue=%s started attempt=%d (eager)", env.id, env.task,
                     env.queue, env.attempt)
            outcome = self._execute(task, env, ctx)
            if outcome.status != RETRYING:
                break
            skipped, skipped_s = skipped + 1, skipped_s + outcome.retry_in_s
            log.warning("job=%s task=%s queue=%s retrying attempt=%d error=%s: %s "
                        "(eager: the %.3f s delay is skipped)", env.id, env.task, env.queue,
                        env.attempt, outcome.error_type, outcome.error_message,
                        outcome.retry_in_s)
            self.records.update(env.queue, env.id, skipped_delays=skipped,
                                skipped_delay_s=skipped_s)
            # The next attempt's message, as settle writes it, read back as a worker would.
            env = self._decode(self.serializer.dumps(env.next_attempt().to_dict()), env.queue)
        return self._settle(env, outcome, outcome.exception)

    def _execute(self, task: AnyTask, env: Envelope, ctx: JobContext) -> Outcome:
        """The worker's execute step (middleware and hooks included), with its time limit: a
        sync task over ``timeout_s`` is stopped in this (the caller's) thread as a worker
        stops it in a pool thread. The outcome carries the attempt's exception itself
        (``outcome.exception``), which ``eager_raise`` re-raises."""
        if task.is_async or not timeout_of(task, env):
            return execute(task, env, ctx, self.hooks)  # (async: by asyncio.wait_for)
        with self._watchdog:
            return execute(task, env, ctx, self.hooks, self._watchdog.limiter)

    def _decode(self, message: bytes, queue: str) -> Envelope:
        env = Envelope.from_dict(decode(self.serializer, message, self.max_bytes(),
                                        MAX_DEPTH + JOB_WRAPPING))
        return env if env.queue == queue else replace(env, queue=queue)

    def _progress(self, env: Envelope) -> Callable[[str, float, str], None]:
        def report(job_id: str, fraction: float, message: str) -> None:
            self.records.update(env.queue, job_id, progress=fraction, progress_message=message)
        return report

    def _settle(self, env: Envelope, outcome: Outcome, error: BaseException | None) -> Job[Any]:
        """Record how the job ended; raise its error when asked to."""
        fields: dict[str, Any] = {"status": outcome.status, "finished_at": time.time()}
        if outcome.status == SUCCEEDED:
            fields.update(result=outcome.result_json, progress="1")
            log.info("job=%s task=%s queue=%s succeeded duration_s=%.6f (eager)", env.id,
                     env.task, env.queue, outcome.duration_s)
        else:
            fields.update(error_type=outcome.error_type, error_message=outcome.error_message,
                          traceback=outcome.traceback)
            log.warning("job=%s task=%s queue=%s %s attempt=%d error=%s: %s (eager)", env.id,
                        env.task, env.queue, outcome.status, env.attempt, outcome.error_type,
                        outcome.error_message)
        self.records.update(env.queue, env.id, **fields)
        if outcome.status != SUCCEEDED and self.raise_failures:
            if isinstance(error, Exception):
                raise error
            # A time limit (async task) or SystemExit: not the caller's to receive as is.
            raise JobFailed(env.id, outcome.error_type, outcome.error_message, outcome.traceback)
        return Job(self.records, env.id, env.queue)
