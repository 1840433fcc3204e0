"""Jobs: the handle a producer holds (:class:`Job`) and the context a running task sees
(:class:`JobContext`); the message that travels (:class:`~redisq.model.Envelope`) is in
:mod:`redisq.model`.

A job record is a Redis hash whose fields are readable with ``redis-cli``:
``status`` (one of :data:`STATUSES`), ``task``, ``attempts``,
``enqueued_at``/``started_at``/``finished_at`` (unix seconds), ``worker``, ``result`` (JSON),
``error_type``/``error_message``/``traceback``, ``progress``/``progress_message``, ``due_at``,
``throttled_at`` (when a rate or concurrency limit last sent it back to wait),
``args`` (a finished job's arguments, cut to ``args_summary_bytes``), ``headers`` (JSON, when
the job was sent with some) and, for a failed job, ``message`` (the whole message). A waiting
job's message lives in its queue only; the queue is in the record's key (reading fills in
``queue``, and ``attempts`` before the first start). A succeeded job's record is then packed
into one field of a done bucket (:mod:`redisq.backend.finished`); :meth:`Job.info` reads it as
the same fields.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from .backend import control
from .backend.backoff import doubling
from .errors import JobFailed, JobTimeout
from .model import ABORTED, CANCELLED, DEAD, EXPIRED, FAILED, SUCCEEDED


class JobRecords(Protocol):
    """Where a :class:`Job` reads its record: :class:`~redisq.backend.records.Records` (Redis),
    or an eager App's in-memory store (:class:`~redisq.eager.EagerRecords`)."""

    def get(self, queue: str, job_id: str) -> dict[str, Any]: ...
    def status(self, queue: str, job_id: str) -> str | None: ...
    def cancel(self, queue: str, job_id: str) -> bool: ...


@dataclass
class JobContext:
    """What a running task knows about its job (``current_job()`` or ``bind=True``)."""

    id: str
    task: str
    queue: str
    attempt: int
    report: Callable[[str, float, str], None] = field(repr=False, default=lambda *a: None)
    #: The job's headers (``task.options(headers=...)``, or added by middleware).
    headers: dict[str, Any] = field(default_factory=dict)
    #: Set (by the worker's supervisor thread) when ``job.abort()`` reached this job's
    #: worker (see :attr:`aborted`); a plain flag: a job's context costs nothing more.
    abort_requested: bool = field(repr=False, default=False)
    #: How the worker forces an ``async def`` task to stop (cancels it); set while it runs.
    on_force: Callable[[], None] | None = field(repr=False, default=None)

    @property
    def aborted(self) -> bool:
        """Whether ``job.abort()`` asked this job to stop: a task that checks it can end
        cleanly; after the worker's ``abort_grace_s`` it is stopped anyway."""
        return self.abort_requested

    def progress(self, fraction: float, message: str = "") -> None:
        """Publish how far the task is (0..1) with an optional message; readable by the
        producer (``job.info()``) and the dashboard."""
        self.report(self.id, max(0.0, min(1.0, float(fraction))), message)


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "redisq_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task is running for; raises ``RuntimeError`` outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() is only available inside a running task")
    return ctx


R = TypeVar("R")
#: The first wait of a result poll; later ones double up to ``poll_s``.
RESULT_FIRST_POLL_S = 0.002


class Job(Generic[R]):
    """A producer's handle on a job: its id, live status, progress and result (``R``: what
    the task returns, when the job came from a typed :class:`~redisq.tasks.Task`)."""

    def __init__(self, records: JobRecords, job_id: str, queue: str, created: bool = True) -> None:
        self._records = records
        self.id = job_id
        self.queue = queue
        #: False when enqueue found an equal unique job queued or running and returned it.
        self.created = created

    def __repr__(self) -> str:
        return f"<Job {self.id} queue={self.queue}>"

    def info(self) -> dict[str, Any]:
        """The whole record (empty dict once it expired or if it never existed)."""
        return self._records.get(self.queue, self.id)

    @property
    def status(self) -> str | None:
        return self._records.status(self.queue, self.id)

    @property
    def headers(self) -> dict[str, Any]:
        """The headers the job was sent with (``{}`` without, or once its record expired)."""
        return record_headers(self.info())

    def cancel(self) -> bool:
        """Cancel the job if it has not started; returns whether it was cancelled."""
        return self._records.cancel(self.queue, self.id)

    def abort(self) -> str:
        """Stop the job: ``"cancelled"`` if it was still waiting; ``"aborting"`` if it runs
        (its worker sees the request within one heartbeat, sets ``current_job().aborted``
        and stops it after ``abort_grace_s``; it ends as ``"aborted"``, never retried);
        ``""`` if it had already finished."""
        client = getattr(self._records, "client", None)  # (an eager App's store: no Redis)
        return control.abort(self._records, self.queue, self.id, client)

    def result(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> R:
        """Wait for the job to end and return its result; raises :class:`JobFailed` with the
        task's error type and message, or :class:`JobTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        delays = doubling(RESULT_FIRST_POLL_S, poll_s)
        while True:
            info = self.info()
            done, value = final_result(self.id, info)
            if done:
                return cast(R, value)  # the JSON of what the task returned
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise still_running(self.id, info, timeout_s)
            time.sleep(min(next(delays), remaining))


def record_headers(info: dict[str, Any]) -> dict[str, Any]:
    """A record's ``headers`` field as a dict (``{}``: none, or not a JSON object)."""
    try:
        value = json.loads(info.get("headers") or "{}")
    except Exception:  # written by something else (RecursionError too): not ours to fail on
        return {}
    return value if isinstance(value, dict) else {}


def still_running(job_id: str, info: dict[str, Any], timeout_s: float) -> JobTimeout:
    """The error of a result wait that ran out (sync and asyncio alike)."""
    return JobTimeout(f"job {job_id} still {info.get('status') or 'unknown'} after {timeout_s} s")


def final_result(job_id: str, info: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, result)`` once a record says succeeded; raises :class:`JobFailed` once it says
    failed, dead, cancelled or expired; ``(False, None)`` while the job is still on its way."""
    status = info.get("status")
    if status == SUCCEEDED:
        if not info.get("result"):
            return True, None
        try:
            return True, json.loads(info["result"])
        except Exception as exc:  # RecursionError, MemoryError too: written by someone else
            raise JobFailed(job_id, "BadResult", "the stored result is not readable JSON: "
                            f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if status == CANCELLED:  # not the error of an attempt that ran before the cancel
        raise JobFailed(job_id, CANCELLED, "the job was cancelled before it ran")
    if status == EXPIRED:
        raise JobFailed(job_id, EXPIRED, info.get("error_message")
                        or "the job was not started before it expired")
    if status in (FAILED, DEAD, ABORTED):
        raise JobFailed(job_id, info.get("error_type", status or ""),
                        info.get("error_message", status or ""), info.get("traceback", ""))
    return False, None
