"""Registered tasks: ``@app.task`` turns a function into a :class:`Task` that can be called
directly, or sent to a worker with ``delay``/``enqueue``/``map``."""

from __future__ import annotations

import inspect
import json
import time
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypedDict, TypeVar, overload

from .backend import keys
from .canvas import Signature
from .errors import ConfigError, DuplicateJob
from .job import Job, JobContext
from .model import Envelope, new_id
from .serializers import decode_typed, typed_kind

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Concatenate

    from typing_extensions import Unpack

UniqueBy = str | Sequence[str] | Callable[..., str] | None
#: ``hook(callback)``: run ``callback`` once the caller's current database transaction has
#: committed (at once outside one), never if it rolls back (``App.use_commit_hook``).
CommitHook = Callable[[Callable[[], Any]], Any]
P = ParamSpec("P")
R = TypeVar("R")


class CallOptions(TypedDict, total=False):
    """Per-call options (``task.options(...)``, ``app.enqueue(..., options=...)``): they
    travel in the message and override the registered task's for that one job.

    ``queue``, ``job_id``: where it goes and its id (a duplicate id is refused while that job
    is queued or running). ``timeout_s``, ``retries``: the worker's limits for it.
    ``expires_s``: an attempt not started within this many seconds of when the job was due is
    not run (status ``expired``). ``result_ttl_s``: how long its finished record is kept
    (succeeded, cancelled or expired; failures keep ``failure_ttl_s``). ``headers``: a small
    JSON object of metadata (``current_job().headers``, ``job.headers``)."""

    queue: str
    timeout_s: float | None
    retries: int
    expires_s: float
    result_ttl_s: float
    job_id: str
    headers: dict[str, Any]


#: The keys of :class:`CallOptions` (the only ones ``options=`` accepts).
CALL_OPTIONS = frozenset(CallOptions.__annotations__)


class Producer(Protocol):
    """What a :class:`Task` sends its calls through (an :class:`redisq.App`). A protocol, so
    this module needs nothing from ``app`` and the app can import it."""

    def enqueue(self, task_name: str, args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None, *, queue: str | None = None,
                delay_s: float | None = None, job_id: str | None = None,
                eta: datetime | float | None = None,
                options: Mapping[str, Any] | None = None,
                depends_on: Sequence[Any] | None = None) -> Job[Any]: ...

    def enqueue_many(self, task_name: str,
                     calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
                     queue: str | None = None,
                     options: Mapping[str, Any] | None = None) -> list[Job[Any]]: ...

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
    #: ``"N/s"``, ``"N/m"`` or ``"N/h"``: most starts per period across the fleet.
    rate_limit: str | None = None
    #: Most jobs of this task running at once across the fleet.
    concurrency_limit: int | None = None

    @property
    def limited(self) -> bool:
        """Whether starting a job of this task must pass the limits step (``lua/gate.lua``)."""
        return self.rate_limit is not None or self.concurrency_limit is not None

    @property
    def rate_interval_ms(self) -> float:
        """Milliseconds between two starts under ``rate_limit`` (0: no rate limit)."""
        if self.rate_limit is None:
            return 0.0
        count, period_s = parse_rate(self.rate_limit)
        return period_s * 1000.0 / count


_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, float]:
    """``"100/m"`` → ``(100, 60.0)``; raises ``ValueError`` for anything else."""
    count, sep, unit = str(text).partition("/")
    try:
        n = int(count)
    except ValueError:
        n = 0
    if not sep or unit not in _PERIODS or n < 1:
        raise ValueError(f"rate_limit {text!r}: expected 'N/s', 'N/m' or 'N/h' with N >= 1")
    return n, _PERIODS[unit]


@dataclass(frozen=True)
class TaskDefaults(TaskOptions, Generic[P, R]):
    """``task.options``: the registered options (``task.options.retries``), and, called, a
    :class:`TaskCall` with per-call options: ``add.options(queue="high").delay(2, 3)``."""

    task: Task[P, R] | None = field(default=None, repr=False, compare=False)

    def __call__(self, **options: Unpack[CallOptions]) -> TaskCall[P, R]:
        """The task with these per-call options (see :class:`CallOptions`)."""
        if self.task is None:
            raise TypeError("these options belong to no task")
        return TaskCall(self.task, check_call_options(options))


class TaskCall(Generic[P, R]):
    """A task with per-call options: ``delay``, ``enqueue`` and ``map`` as the task's own,
    each job carrying the options. Typed like the task, so arguments are still checked."""

    def __init__(self, task: Task[P, R], options: Mapping[str, Any]) -> None:
        self.task = task
        self.call_options: dict[str, Any] = dict(options)

    def __repr__(self) -> str:
        return f"<TaskCall {self.task.name} {self.call_options}>"

    def options(self, **options: Unpack[CallOptions]) -> TaskCall[P, R]:
        """More options on top of these (a later value wins)."""
        return TaskCall(self.task, {**self.call_options, **check_call_options(options)})

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Queue a call with these arguments and options; returns its :class:`Job`."""
        return self.enqueue(args=args, kwargs=kwargs)

    def enqueue(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                delay_s: float | None = None, eta: datetime | float | None = None) -> Job[R]:
        """Queue a call, later with ``delay_s`` or at ``eta``."""
        return self.task.app.enqueue(self.task.name, args=args, kwargs=kwargs, delay_s=delay_s,
                                     eta=eta, options=self.call_options)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """:meth:`Task.delay_on_commit` with these options."""
        self.enqueue_on_commit(args=args, kwargs=kwargs)

    def enqueue_on_commit(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                          delay_s: float | None = None) -> None:
        """:meth:`Task.enqueue_on_commit` with these options."""
        self.task.on_commit(args, kwargs, lambda a, k: self.enqueue(a, k, delay_s=delay_s))

    def map(self, calls: Iterable[Any]) -> list[Job[R]]:
        """Queue many calls (as :meth:`Task.map`), each with these options (not ``job_id``:
        ids are one per job)."""
        if "job_id" in self.call_options:
            raise TypeError("map() queues many jobs: a job_id option cannot apply to them all")
        return self.task.app.enqueue_many(self.task.name, (split_call(c) for c in calls),
                                          options=self.call_options)


def check_call_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as a dict if every key is a :class:`CallOptions` one (``TypeError``
    naming the first that is not); their values are checked when the message is built."""
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict, not {type(options).__name__}")
    unknown = [k for k in options if k not in CALL_OPTIONS]
    if unknown:
        raise TypeError(f"unknown job option {unknown[0]!r} (known: "
                        f"{', '.join(sorted(CALL_OPTIONS))})")
    return dict(options)


class Task(Generic[P, R]):
    """A function registered with an :class:`redisq.App` under ``name``. Typed by the
    function's parameters ``P`` and result ``R``: ``delay`` takes what the function takes and
    returns a ``Job[R]`` (for an ``async def`` task, ``R`` is what it awaits to)."""

    def __init__(self, app: Producer, fn: Callable[..., Any], name: str, options: TaskOptions) -> None:
        if options.on_duplicate not in ("return", "raise"):
            raise ValueError("on_duplicate is 'return' or 'raise'")
        if options.rate_limit is not None:
            parse_rate(options.rate_limit)
        if options.concurrency_limit is not None and (
                type(options.concurrency_limit) is not int or options.concurrency_limit < 1):
            raise ValueError("concurrency_limit is an int >= 1 (or None)")
        self.app = app
        self.fn = fn
        self.name = name
        #: The registered options; called, per-call ones (``task.options(queue="high")``).
        self.options: TaskDefaults[P, R] = TaskDefaults(
            **{f.name: getattr(options, f.name) for f in fields(TaskOptions)}, task=self)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters.values())
        # What a caller passes: without the job context a bound task receives first.
        self._call_signature = inspect.Signature(params[1:] if options.bind and params else params)
        # Call shapes (positional count, keyword names) already bound once: whether a call
        # binds depends only on its shape, so a hot producer binds each shape once.
        self._shapes_ok: set[tuple[int, tuple[str, ...]]] = set()
        self._typed: _TypedPlan | bool | None = False  # False: not worked out yet
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
                queue: str | None = None, eta: datetime | float | None = None,
                depends_on: Sequence[Any] | None = None) -> Job[R]:
        """Queue a call with job options kept apart from the task's arguments;
        ``depends_on``: only once all these jobs succeeded (docs/workflows.md)."""
        return self.app.enqueue(self.name, args=args, kwargs=kwargs, delay_s=delay_s,
                                job_id=job_id, queue=queue, eta=eta, depends_on=depends_on)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task with these arguments (for ``chain`` and ``group``)."""
        return Signature(self.name, args, kwargs, self.options.queue, self.app)

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

    def typed_args(self, args: Sequence[Any],
                   kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as the function declares them: text that arrived for a parameter
        annotated ``datetime``, ``date``, ``UUID`` or ``Decimal`` (or ``X | None``) becomes
        that type again (see :mod:`redisq.serializers`); everything else passes as it came.
        Raises ``ValueError`` for text that is no such value (the attempt fails)."""
        plan = self._typed_plan()
        if plan is None:  # no such annotation: nothing to do (most tasks)
            return list(args), kwargs
        out = list(args)
        for i, value in enumerate(out):
            kind = plan.positional[i] if i < len(plan.positional) else plan.var_positional
            if kind is not None:
                out[i] = decode_typed(value, kind)
        named = {}
        for name, value in kwargs.items():
            kind = plan.named.get(name, plan.var_keyword) if name not in plan.untyped else None
            named[name] = decode_typed(value, kind) if kind is not None else value
        return out, named

    def _typed_plan(self) -> _TypedPlan | None:
        if self._typed is False:
            self._typed = _TypedPlan.of(self.fn, self._call_signature)
        return self._typed  # type: ignore[return-value]

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
        self.on_commit(args, kwargs, lambda a, k: self.enqueue(a, k, delay_s=delay_s,
                                                               job_id=job_id, queue=queue))

    def on_commit(self, args: Sequence[Any], kwargs: dict[str, Any] | None,
                  send: Callable[[tuple[Any, ...], dict[str, Any]], Any]) -> None:
        """Check a call now and ``send(args, kwargs)`` it through the app's commit hook."""
        hook = self.app.commit_hook
        if hook is None:
            raise ConfigError(f"{self.name}: enqueue_on_commit needs a commit hook: add "
                              "'redisq.contrib.django' to INSTALLED_APPS, or call "
                              "app.use_commit_hook(hook)")
        kwargs = dict(kwargs or {})
        self.check_args(args, kwargs)  # a bad call fails in the caller, not after the commit
        args = tuple(args)
        hook(lambda: send(args, kwargs))


@dataclass(frozen=True)
class _TypedPlan:
    """Which parameters of a task get typed decoding (:meth:`Task.typed_args`)."""

    positional: list[type | None]  # by position, for parameters a call may pass positionally
    named: dict[str, type]  # typed parameters a call may pass by name
    untyped: frozenset[str]  # the other named parameters (not caught by **kwargs' type)
    var_positional: type | None
    var_keyword: type | None

    @classmethod
    def of(cls, fn: Callable[..., Any], signature: inspect.Signature) -> _TypedPlan | None:
        """The plan for ``fn`` called with ``signature``; None when no parameter needs one."""
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation that does not resolve: values pass as they came
            return None
        positional: list[type | None] = []
        named: dict[str, type] = {}
        untyped: set[str] = set()
        var_positional = var_keyword = None
        for p in signature.parameters.values():
            kind = typed_kind(hints.get(p.name))
            if p.kind is p.VAR_POSITIONAL:
                var_positional = kind
            elif p.kind is p.VAR_KEYWORD:
                var_keyword = kind
            else:
                if p.kind is not p.KEYWORD_ONLY:
                    positional.append(kind)
                if p.kind is not p.POSITIONAL_ONLY and kind is not None:
                    named[p.name] = kind
                elif p.kind is not p.POSITIONAL_ONLY:
                    untyped.add(p.name)
        if not (named or var_positional or var_keyword or any(positional)):
            return None
        return cls(positional, named, frozenset(untyped), var_positional, var_keyword)


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
    rate_limit: str | None
    concurrency_limit: int | None


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
                  job_id: str | None, unique: str | None,
                  headers: dict[str, Any] | None = None,
                  options: dict[str, Any] | None = None) -> Envelope:
    return Envelope(id=job_id or new_id(), task=task_name, args=list(args), kwargs=dict(kwargs),
                    queue=queue, attempt=1, enqueued_at=round(time.time(), 3), unique=unique,
                    # (The caller's own dicts, fresh per call: no copy on the hot path.)
                    headers={} if headers is None else headers,
                    options={} if options is None else options)


def duplicate(task: AnyTask | None, job: Job[Any]) -> Job[Any]:
    """What enqueue returns (or raises) when an equal unique job is queued or running."""
    if task is not None and task.options.on_duplicate == "raise":
        raise DuplicateJob(job.id)
    return job
