"""Middleware: one interface around enqueueing and executing jobs (``app.add_middleware``).

A middleware is any object with some of these methods (all optional)::

    before_enqueue(envelope) -> Envelope | None   # producer, before the message is encoded
    after_enqueue(job)                            # producer, once the job is queued
    before_execute(job)                           # worker, in the job's thread, before the task
    after_execute(job, outcome)                   # worker, after every attempt
    on_retry(job, outcome)                        # worker, the attempt failed and will be retried
    on_dead(job, outcome)                         # worker, the job failed for good

On the producer ``job`` is the :class:`~redisq.job.Job` handle; on the worker it is the
:class:`~redisq.job.JobContext` the task sees (id, task, queue, attempt, headers), and
``outcome`` the attempt's :class:`~redisq.model.Outcome` (``outcome.exception``: what it raised).

Semantics (docs/middleware.md):

* ``before_*`` run in the order the middleware were added, ``after_*``/``on_*`` in reverse, so
  the first one added wraps all the others (its ``before_execute`` runs first and its
  ``after_execute`` last).
* ``before_enqueue`` may return a changed envelope (``dataclasses.replace``: headers, options,
  arguments); ``None`` keeps it as it was. A change of its id, task or queue, headers over
  :data:`~redisq.limits.MAX_HEADERS_BYTES` or bad options are that middleware's error.
* A middleware error never loses a job: it is logged (with the job id) and the job goes on,
  as it was before that middleware, except in ``before_execute``: an exception there fails
  the attempt like the task's own error (retried while retries remain), because a task must
  not run without what its middleware set up for it. ``after_execute`` is called after every
  attempt, also one whose ``before_execute`` failed.
* ``on_retry``/``on_dead`` come after ``after_execute``, in the job's thread, before the
  outcome is written to Redis. ``on_dead`` also covers ``failed`` (``dead_letter=False``).

Nothing here costs a job anything when no middleware is installed: callers test the
:class:`Middlewares` (falsy when empty) before calling into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import limits
from .model import DEAD, FAILED, RETRYING, Envelope, check_options

if TYPE_CHECKING:
    from .job import Job, JobContext
    from .model import Outcome

log = logging.getLogger("redisq.middleware")

#: The methods a middleware may have; those after the first three run in reverse order.
METHODS = ("before_enqueue", "before_execute", "after_enqueue", "after_execute", "on_retry",
           "on_dead")
_REVERSED = frozenset({"after_enqueue", "after_execute", "on_retry", "on_dead"})


class Middleware(Protocol):
    """The whole interface, for type checkers and readers; a middleware needs only the
    methods it uses (see the module's docstring)."""

    def before_enqueue(self, envelope: Envelope) -> Envelope | None: ...
    def after_enqueue(self, job: Job[Any]) -> None: ...
    def before_execute(self, job: JobContext) -> None: ...
    def after_execute(self, job: JobContext, outcome: Outcome) -> None: ...
    def on_retry(self, job: JobContext, outcome: Outcome) -> None: ...
    def on_dead(self, job: JobContext, outcome: Outcome) -> None: ...


class Middlewares:
    """The middleware of one app, with each method's implementations listed once (so a call
    site pays only for the middleware that have that method). Falsy while empty."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._calls: dict[str, list[Callable[..., Any]]] = {name: [] for name in METHODS}

    def add(self, obj: Any) -> None:
        if not any(callable(getattr(obj, name, None)) for name in METHODS):
            raise TypeError(f"{obj!r} has none of the middleware methods ({', '.join(METHODS)})")
        self.items.append(obj)
        for name in METHODS:
            order = reversed(self.items) if name in _REVERSED else iter(self.items)
            self._calls[name] = [getattr(m, name) for m in order
                                 if callable(getattr(m, name, None))]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def has(self, name: str) -> bool:
        return bool(self._calls[name])

    # -- producer ----------------------------------------------------------------------------
    def before_enqueue(self, env: Envelope) -> Envelope:
        """``env`` as every ``before_enqueue`` leaves it; one that fails or returns an envelope
        it may not is logged and skipped."""
        for fn in self._calls["before_enqueue"]:
            try:
                out = fn(env)
                if out is not None:
                    env = _checked(env, out)
            except Exception:
                log.exception("job=%s task=%s middleware %s.before_enqueue failed; the job is "
                              "queued without its change", env.id, env.task, _owner(fn))
        return env

    def after_enqueue(self, job: Job[Any]) -> None:
        for fn in self._calls["after_enqueue"]:
            _safe(fn, job.id, job)

    # -- worker ------------------------------------------------------------------------------
    def before_execute(self, ctx: JobContext) -> None:
        """Every ``before_execute``; the first exception propagates (it fails the attempt)."""
        for fn in self._calls["before_execute"]:
            fn(ctx)

    def after_attempt(self, ctx: JobContext, outcome: Outcome) -> None:
        """``after_execute``, then ``on_retry`` or ``on_dead`` as the outcome says; errors are
        logged."""
        for fn in self._calls["after_execute"]:
            _safe(fn, ctx.id, ctx, outcome)
        if outcome.status == RETRYING:
            for fn in self._calls["on_retry"]:
                _safe(fn, ctx.id, ctx, outcome)
        elif outcome.status in (DEAD, FAILED):
            for fn in self._calls["on_dead"]:
                _safe(fn, ctx.id, ctx, outcome)


def _checked(env: Envelope, out: Any) -> Envelope:
    if not isinstance(out, Envelope):
        raise TypeError(f"before_enqueue returned {type(out).__name__}, not an Envelope")
    if (out.id, out.task, out.queue) != (env.id, env.task, env.queue):
        raise ValueError("before_enqueue may not change a job's id, task or queue")
    if out.headers is not env.headers:
        limits.headers_json(out.headers)
    if out.options is not env.options:
        check_options(out.options, ValueError)
    return out


def _owner(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", fn)
    return type(owner).__name__


def _safe(fn: Callable[..., Any], job_id: str, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("job=%s middleware %s.%s failed", job_id, _owner(fn),
                      getattr(fn, "__name__", "?"))


class HookMiddleware:
    """The App's hooks (``@app.before_job``, ``@app.after_job``, ``@app.on_failure``) as one
    middleware: a hook that raises is logged, except ``before_job``'s (it fails the attempt,
    as ``before_execute`` does)."""

    def __init__(self, before_job: list[Callable[..., Any]], after_job: list[Callable[..., Any]],
                 on_failure: list[Callable[..., Any]]) -> None:
        self.before_job = before_job
        self.after_job = after_job
        self.on_failure = on_failure

    def before_execute(self, job: JobContext) -> None:
        for hook in self.before_job:
            hook(job)

    def after_execute(self, job: JobContext, outcome: Outcome) -> None:
        if outcome.exception is not None:
            for hook in self.on_failure:
                _safe(hook, job.id, job, outcome.exception)
        for hook in self.after_job:
            _safe(hook, job.id, job, outcome)


@dataclass
class Hooks:
    """Callables run by the worker around jobs and its own life, and the middleware (which
    the job hooks are served by: see :class:`~redisq.middleware.HookMiddleware`)."""

    before_job: list[Callable[..., Any]] = field(default_factory=list)
    after_job: list[Callable[..., Any]] = field(default_factory=list)
    on_failure: list[Callable[..., Any]] = field(default_factory=list)
    startup: list[Callable[..., Any]] = field(default_factory=list)
    shutdown: list[Callable[..., Any]] = field(default_factory=list)
    middleware: Middlewares = field(default_factory=Middlewares)
    _job_hooks: bool = False  # whether the job hooks' middleware is installed


__all__ = ["METHODS", "HookMiddleware", "Hooks", "Middleware", "Middlewares"]
