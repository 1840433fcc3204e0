"""The pure step of running a job: run one job's function and say how it ended.

Nothing here talks to Redis, so it is unit-tested without a server; retry policy lives here too
(:func:`failure_outcome`), out of the loop. Two callers share it, which is why it sits below
the App rather than in :mod:`redisq.worker`: the worker's pool threads, and an eager App
(:mod:`redisq.eager`), which runs jobs inline in the producer's thread through this same step
so that a test sees what a worker would do.

Time limits: in a worker thread a job over ``timeout_s`` is stopped by raising
:class:`JobTimeLimit` inside that thread (``PyThreadState_SetAsyncExc``). Python delivers it at
the thread's next bytecode, so pure-Python work stops at once, while a call blocked in C (a
socket read, ``time.sleep``) stops when that call returns; the job is then counted as failed.
``async def`` tasks are cancelled at their next ``await`` (``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backend.backoff import retry_delay_s
from .errors import Retry
from .job import JobContext, _current
from .middleware import Hooks  # the App's hooks and middleware (below the App, as this is)
from .model import ABORTED, DEAD, FAILED, RETRYING, SUCCEEDED, Envelope, Message, Outcome
from .serializers import compact_json

if TYPE_CHECKING:
    from .tasks import AnyTask

log = logging.getLogger("redisq.worker")


@dataclass(frozen=True)
class Reserved:
    """A reserved message that decoded into a runnable job: what the worker hands to
    :func:`execute` and then to the recorder."""

    message: Message
    env: Envelope
    task: AnyTask


class JobTimeLimit(BaseException):
    """Raised inside a job's thread when it runs past ``timeout_s`` (a BaseException so a
    task's ``except Exception`` cannot swallow it)."""


class JobAborted(BaseException):
    """Raised inside a job's thread (or as the cancel of its asyncio task) when ``job.abort()``
    asked it to stop and it had not ended ``abort_grace_s`` later."""


class TimeLimiter:
    """Watches running jobs' deadlines; :meth:`enforce` (called by the worker's supervisor
    thread) raises :class:`JobTimeLimit` in the thread of each overdue job once (or
    :class:`JobAborted`, for a deadline set by :meth:`abort`). The exception is only raised
    while the thread is inside the watched call, so it always lands in :func:`execute`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, type[BaseException]]] = {}

    def watch(self, timeout_s: float | None) -> None:
        at = self.clock() + timeout_s if timeout_s else float("inf")  # inf: abortable only
        with self._lock:
            self._deadlines[threading.get_ident()] = (at, JobTimeLimit)

    def unwatch(self) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    def abort(self, thread_id: int, grace_s: float) -> bool:
        """Stop the call watched in ``thread_id`` within ``grace_s`` (unless its own time
        limit comes first); False when that thread runs no watched call."""
        with self._lock:
            at, _ = self._deadlines.get(thread_id, (None, None))
            if at is None:
                return False
            self._deadlines[thread_id] = (min(at, self.clock() + grace_s), JobAborted)
            return True

    def enforce(self) -> int:
        now = self.clock()
        with self._lock:
            overdue = [(tid, exc) for tid, (at, exc) in self._deadlines.items() if at <= now]
            for tid, exc in overdue:
                del self._deadlines[tid]
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                           ctypes.py_object(exc))
        return len(overdue)


class AsyncRunner:
    """One event loop in a background thread where ``async def`` tasks run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="redisq-asyncio")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)
        ctx = _current.get()
        if ctx is not None:  # job.abort(): the worker cancels the task after the grace
            ctx.on_force = lambda: self._cancel(fut)
        try:
            return fut.result()
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise JobTimeLimit(f"exceeded timeout_s={timeout_s}") from exc
        except concurrent.futures.CancelledError as exc:
            raise JobAborted("aborted (cancelled after the grace)") from exc
        finally:
            if ctx is not None:
                ctx.on_force = None

    def _cancel(self, fut: concurrent.futures.Future[Any]) -> None:
        self.loop.call_soon_threadsafe(fut.cancel)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def failure_outcome(task: AnyTask, env: Envelope, exc: BaseException, duration_s: float,
                    rng_delay: Callable[[int, float, float], float] = retry_delay_s) -> Outcome:
    """Retry with jittered exponential backoff while attempts remain, else dead (or failed
    for tasks with ``dead_letter=False``). ``raise Retry(delay_s=…)`` picks its own delay."""
    opts = task.options
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, JobAborted):  # never retried: someone asked for it to stop
        return Outcome(ABORTED, None, "Aborted", str(exc) or "aborted (forced after the grace)",
                       tb, 0.0, duration_s)
    err_type = "JobTimeout" if isinstance(exc, JobTimeLimit) else type(exc).__name__
    message = str(exc) or (f"exceeded timeout_s={timeout_of(task, env)}"
                           if isinstance(exc, JobTimeLimit) else err_type)
    # The job's own retries (task.options(retries=...)) over the task's.
    retries = env.options.get("retries", opts.retries) if env.options else opts.retries
    if env.attempt <= retries:
        if isinstance(exc, Retry) and exc.delay_s is not None:
            delay = max(exc.delay_s, 0.0)
        else:
            delay = rng_delay(env.attempt, opts.retry_backoff_s, opts.retry_backoff_cap_s)
        return Outcome(RETRYING, None, err_type, message, tb, delay, duration_s, exception=exc)
    final = DEAD if opts.dead_letter else FAILED
    return Outcome(final, None, err_type, message, tb, 0.0, duration_s, exception=exc)


def timeout_of(task: AnyTask, env: Envelope) -> float | None:
    """The job's time limit: its own (``task.options(timeout_s=...)``), else the task's."""
    if env.options and "timeout_s" in env.options:
        value: float | None = env.options["timeout_s"]
        return value
    return task.options.timeout_s


def execute(task: AnyTask, env: Envelope, ctx: JobContext, hooks: Hooks,
            limiter: TimeLimiter | None = None, runner: AsyncRunner | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Outcome:
    """Run ``task`` for ``env`` inside the app's middleware (``hooks.middleware``, which
    serves the job hooks too) with its time limit; never raises (except a forced exit),
    whatever the task or a middleware does."""
    mw = hooks.middleware
    installed = bool(mw.items)  # a list's truth: the whole per-job cost without middleware
    token = _current.set(ctx)
    try:
        started = clock()
        try:
            if installed:
                mw.before_execute(ctx)  # an error here fails the attempt, as the task's
            # Typed decoding (datetime, date, UUID, Decimal parameters) is part of the
            # attempt: text that is no such value fails it like any error of the task.
            args, kwargs = task.typed_args(env.args, env.kwargs)
            if task.options.bind:
                args.insert(0, ctx)
            timeout_s = timeout_of(task, env) if env.options else task.options.timeout_s
            result = _call(task, args, kwargs, limiter, runner, timeout_s)
            # A result JSON cannot carry is the task's error, found here rather than in Redis
            # (datetime, date, UUID and Decimal travel as text, as arguments do).
            encoded = compact_json(result)
            outcome = Outcome(SUCCEEDED, result, result_json=encoded,
                              duration_s=clock() - started)
        # Any task error is an outcome; SystemExit too (a task calling sys.exit() in a pool
        # thread would otherwise end that thread and leave its job reserved for ever).
        except (Exception, JobTimeLimit, JobAborted, SystemExit) as exc:
            outcome = failure_outcome(task, env, exc, clock() - started)
        if installed:  # in the job's context still: a tracing span opened before ends here
            mw.after_attempt(ctx, outcome)
    finally:
        _current.reset(token)
    return outcome


def _call(task: AnyTask, args: list[Any], kwargs: dict[str, Any], limiter: TimeLimiter | None,
          runner: AsyncRunner | None, timeout_s: float | None) -> Any:
    if task.is_async:
        if runner is not None:
            return runner.run(task.fn(*args, **kwargs), timeout_s)
        try:
            return asyncio.run(asyncio.wait_for(task.fn(*args, **kwargs), timeout_s))
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise JobTimeLimit(f"exceeded timeout_s={timeout_s}") from exc
    if limiter is not None:
        limiter.watch(timeout_s)
    try:
        return task.fn(*args, **kwargs)
    finally:
        if limiter is not None:
            limiter.unwatch()
