"""Registered tasks: ``@app.task`` turns a function into a :class:`Task` that can be called
directly, or sent to a worker with ``delay``/``enqueue``/``map``."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypedDict, TypeVar, overload

from .backend import keys
from .errors import ConfigError, DuplicateJob
from .job import Job, JobContext
from .model import Envelope, new_id

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Concatenate

UniqueBy = str | Sequence[str] | Callable[..., str] | None
#: ``hook(callback)``: run ``callback`` once the caller's current database transaction has
#: committed (at once outside one), never if it rolls back (``App.use_commit_hook``).
CommitHook = Callable[[Callable[[], Any]], Any]
P = ParamSpec("P")
R = TypeVar("R")


class Producer(Protocol):
    """What a :class:`Task` sends its calls through (an :class:`redisq.App`). A protocol, so
    this module needs nothing from ``app`` and the app can import it."""

    def enqueue(self, task_name: str, args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None, *, queue: str | None = None,
                delay_s: float | None = None, job_id: str | None = None,
                eta: datetime | float | None = None) -> Job[Any]: ...

    def enqueue_many(self, task_name: str,
                     calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
                     queue: str | None = None) -> list[Job[Any]]: ...

    @property
    def commit_hook(self) -> CommitHook | None: ...


@dataclass(frozen=True)
class TaskOptions:
    """How the worker runs a task (these stay in the worker; they do not travel)."""

    queue: str = "default"
    retries: int = 3
    timeout_s: float | None = 300.0
    retry_backoff_s: float = 1.0
    retry_backoff_cap_s: float = 600.0
    unique_by: UniqueBy = None
    on_duplicate: str = "return"  # or "raise"
    bind: bool = False
    dead_letter: bool = True


class Task(Generic[P, R]):
    """A function registered with an :class:`redisq.App` under ``name``. Typed by the
    function's parameters ``P`` and result ``R``: ``delay`` takes what the function takes and
    returns a ``Job[R]`` (for an ``async def`` task, ``R`` is what it awaits to)."""

    def __init__(self, app: Producer, fn: Callable[..., Any], name: str, options: TaskOptions) -> None:
        if options.on_duplicate not in ("return", "raise"):
            raise ValueError("on_duplicate is 'return' or 'raise'")
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters.values())
        # What a caller passes: without the job context a bound task receives first.
        self._call_signature = inspect.Signature(params[1:] if options.bind and params else params)
        # Call shapes (positional count, keyword names) already bound once: whether a call
        # binds depends only on its shape, so a hot producer binds each shape once.
        self._shapes_ok: set[tuple[int, tuple[str, ...]]] = set()
        keys.check_name(options.queue)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now, as a plain call (no queue involved)."""
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Queue a call with these arguments (one round trip); returns its :class:`Job`."""
        return self.enqueue(args=args, kwargs=kwargs)

    def enqueue(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                delay_s: float | None = None, job_id: str | None = None,
                queue: str | None = None, eta: datetime | float | None = None) -> Job[R]:
        """Queue a call with job options kept apart from the task's arguments."""
        return self.app.enqueue(self.name, args=args, kwargs=kwargs, delay_s=delay_s,
                                job_id=job_id, queue=queue, eta=eta)

    def map(self, calls: Iterable[Any], queue: str | None = None) -> list[Job[R]]:
        """Queue many calls in pipelined round trips. Each item is an args tuple, a single
        argument, or an ``(args, kwargs)`` pair written as ``((1, 2), {"x": 3})``."""
        return self.app.enqueue_many(self.name, (split_call(c) for c in calls), queue=queue)

    def unique_key(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
        """The key two calls share when they must not be queued or run at the same time."""
        by = self.options.unique_by
        if by is None:
            return None
        if callable(by):
            value: Any = by(*args, **kwargs)
        else:
            names = [by] if isinstance(by, str) else list(by)
            # The caller's signature: a bound task's first parameter is its job context.
            bound = self._call_signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            missing = [n for n in names if n not in bound.arguments]
            if missing:
                raise TypeError(f"{self.name}: unique_by names unknown parameter(s) {missing}")
            value = [bound.arguments[n] for n in names]
        return f"{self.name}:{json.dumps(value, sort_keys=True, default=str)}"

    def check_args(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Refuse, at enqueue time, a call the function could not accept."""
        shape = (len(args), tuple(kwargs))
        if shape in self._shapes_ok:
            return
        self._call_signature.bind(*args, **kwargs)
        if len(self._shapes_ok) < 64:  # bounded: callers with ever-new keyword sets
            self._shapes_ok.add(shape)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue this call once the current database transaction commits, never if it rolls
        back (so no worker looks for a row that does not exist). The arguments are checked
        now; the job is queued by the app's commit hook (``redisq.contrib.django`` installs
        ``transaction.on_commit``), so there is no :class:`Job` to return yet."""
        self.enqueue_on_commit(args=args, kwargs=kwargs)

    def enqueue_on_commit(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                          delay_s: float | None = None, job_id: str | None = None,
                          queue: str | None = None) -> None:
        """:meth:`enqueue` once the current transaction commits (see :meth:`delay_on_commit`).
        Without a commit hook this is a :class:`ConfigError`, not an enqueue now: a caller
        that asked to wait for a commit must not get a job for a row that may roll back."""
        hook = self.app.commit_hook
        if hook is None:
            raise ConfigError(f"{self.name}: enqueue_on_commit needs a commit hook: add "
                              "'redisq.contrib.django' to INSTALLED_APPS, or call "
                              "app.use_commit_hook(hook)")
        kwargs = dict(kwargs or {})
        self.check_args(args, kwargs)  # a bad call fails in the caller, not after the commit
        args = tuple(args)
        hook(lambda: self.enqueue(args=args, kwargs=kwargs, delay_s=delay_s, job_id=job_id,
                                  queue=queue))


#: A task of any signature (the registry, the worker).
AnyTask = Task[..., Any]


class TaskKwargs(TypedDict, total=False):
    """The options of ``@app.task(...)`` besides ``bind`` (see :class:`TaskOptions`)."""

    name: str | None
    queue: str
    retries: int
    timeout_s: float | None
    retry_backoff_s: float
    retry_backoff_cap_s: float
    unique_by: UniqueBy
    on_duplicate: str
    dead_letter: bool


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: it registers a function (sync or ``async def``)."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class BoundTaskDecorator(Protocol):
    """What ``@app.task(bind=True, ...)`` returns: the function's first parameter is the
    :class:`JobContext`, which callers do not pass."""

    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...


def split_call(call: Any) -> tuple[Sequence[Any], dict[str, Any]]:
    """One item of ``map``: an args tuple, a single argument, or an ``(args, kwargs)`` pair."""
    if (isinstance(call, tuple) and len(call) == 2 and isinstance(call[0], (tuple, list))
            and isinstance(call[1], dict)):
        return call[0], call[1]
    if isinstance(call, (tuple, list)):
        return call, {}
    return (call,), {}


def make_envelope(task_name: str, queue: str, args: Sequence[Any], kwargs: dict[str, Any],
                  job_id: str | None, unique: str | None) -> Envelope:
    return Envelope(id=job_id or new_id(), task=task_name, args=list(args), kwargs=dict(kwargs),
                    queue=queue, attempt=1, enqueued_at=round(time.time(), 3), unique=unique)


def duplicate(task: AnyTask | None, job: Job[Any]) -> Job[Any]:
    """What enqueue returns (or raises) when an equal unique job is queued or running."""
    if task is not None and task.options.on_duplicate == "raise":
        raise DuplicateJob(job.id)
    return job
