"""Jobs: the message that travels through a queue (:class:`Envelope`), the handle a producer
holds (:class:`Job`) and the context a running task sees (:class:`JobContext`).

A job record is a Redis hash whose fields are readable with ``redis-cli``:
``status`` (one of :data:`STATUSES`), ``task``, ``attempts``,
``enqueued_at``/``started_at``/``finished_at`` (unix seconds), ``worker``, ``result`` (JSON),
``error_type``/``error_message``/``traceback``, ``progress``/``progress_message``, ``due_at``,
``args`` (a finished job's arguments, cut to ``args_summary_bytes``) and, for a failed job,
``message`` (the whole message). A waiting job's message lives in its queue only; the queue
is in the record's key (reading fills in ``queue``, and ``attempts`` before the first start).
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import JobFailed, JobTimeout

if TYPE_CHECKING:
    from .backend.records import Records

QUEUED, STARTED, SUCCEEDED, FAILED = "queued", "started", "succeeded", "failed"
RETRYING, DEAD, CANCELLED = "retrying", "dead", "cancelled"
STATUSES = (QUEUED, STARTED, SUCCEEDED, FAILED, RETRYING, DEAD, CANCELLED)
#: Statuses after which a job never runs again (unless a dead job is requeued).
TERMINAL = frozenset({SUCCEEDED, FAILED, DEAD, CANCELLED})


def new_id() -> str:
    """32 hex digits of randomness (os.urandom: a quarter of uuid4's cost on the hot path)."""
    return os.urandom(16).hex()


class BadMessage(ValueError):
    """A message that cannot be a job (not JSON, wrong shape); the reason is dead-lettered."""


@dataclass(frozen=True)
class Envelope:
    """What a queue carries for one job attempt. Task options live with the registered task
    in the worker; only what identifies this call travels."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    attempt: int = 1
    enqueued_at: float = 0.0
    unique: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Empty args and kwargs are left out (from_dict defaults them): a message is most of
        # what a queued job costs in Redis, and no-argument jobs are common.
        out: dict[str, Any] = {"id": self.id, "task": self.task}
        if self.args:
            out["args"] = self.args
        if self.kwargs:
            out["kwargs"] = self.kwargs
        out.update(queue=self.queue, attempt=self.attempt, enqueued_at=self.enqueued_at)
        if self.unique is not None:
            out["unique"] = self.unique
        return out

    def next_attempt(self) -> Envelope:
        return replace(self, attempt=self.attempt + 1)

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, dict):
            raise BadMessage(f"a job message is a JSON object, got {type(data).__name__}")
        try:
            env = cls(id=data["id"], task=data["task"], args=data.get("args", []),
                      kwargs=data.get("kwargs", {}), queue=data.get("queue", ""),
                      attempt=data.get("attempt", 1), enqueued_at=data.get("enqueued_at", 0.0),
                      unique=data.get("unique"))
        except KeyError as exc:
            raise BadMessage(f"job message lacks the field {exc.args[0]!r}") from None
        for name, kind in (("id", str), ("task", str), ("args", list), ("kwargs", dict),
                           ("queue", str), ("attempt", int), ("enqueued_at", (int, float)),
                           ("unique", (str, type(None)))):
            value = getattr(env, name)
            # bool is an int to isinstance, but True is no attempt number or time.
            if not isinstance(value, kind) or isinstance(value, bool):
                names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple)
                                                         else (kind,)))
                raise BadMessage(f"job message field {name!r} must be {names}")
        if not env.id or not env.task:
            raise BadMessage("job message fields 'id' and 'task' must not be empty")
        if '"' in env.id or "\\" in env.id:  # as producers refuse (reserve.lua's pattern)
            raise BadMessage("job message field 'id' must not contain quotes or backslashes")
        if env.attempt < 1:
            raise BadMessage(f"job message field 'attempt' must be >= 1, not {env.attempt}")
        return env


@dataclass
class JobContext:
    """What a running task knows about its job (``current_job()`` or ``bind=True``)."""

    id: str
    task: str
    queue: str
    attempt: int
    report: Callable[[str, float, str], None] = field(repr=False, default=lambda *a: None)

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


class Job:
    """A producer's handle on a job: its id, live status, progress and result."""

    def __init__(self, records: Records, job_id: str, queue: str, created: bool = True) -> None:
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

    def cancel(self) -> bool:
        """Cancel the job if it has not started; returns whether it was cancelled."""
        return self._records.cancel(self.queue, self.id)

    def result(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
        """Wait for the job to end and return its result; raises :class:`JobFailed` with the
        task's error type and message, or :class:`JobTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while True:
            info = self.info()
            done, value = final_result(self.id, info)
            if done:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobTimeout(f"job {self.id} still {info.get('status') or 'unknown'} "
                                 f"after {timeout_s} s")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, poll_s)


def final_result(job_id: str, info: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, result)`` once a record says succeeded; raises :class:`JobFailed` once it says
    failed, dead or cancelled; ``(False, None)`` while the job is still on its way."""
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
    if status in (FAILED, DEAD):
        raise JobFailed(job_id, info.get("error_type", status or ""),
                        info.get("error_message", status or ""), info.get("traceback", ""))
    return False, None
