"""What an :class:`~redisq.App` registers: tasks, periodic jobs, subscribers, hooks and
middleware, and the database commit hook.

:class:`Registrations` is the App's base class: the decorators of an application module
(``@app.task``, ``@app.periodic``, ``@app.subscriber``, ``@app.before_job``...) fill it at
import, and workers, the scheduler and the web app read it (``app.tasks``,
``app.periodic_jobs``, ``app.subscribers``, ``app.hooks``). It connects to nothing; the
producer side (enqueue, publish, jobs, locks) is :class:`redisq.app.App`'s own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, overload

from .backend import keys
from .middleware import HookMiddleware, Hooks
from .periodic import Periodic, job_id
from .tasks import (
    AnyTask,
    BoundTaskDecorator,
    CommitHook,
    Producer,
    Task,
    TaskDecorator,
    TaskKwargs,
    TaskOptions,
    UniqueBy,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from typing_extensions import Unpack

    from .producer import Messages

F = TypeVar("F", bound=Callable[..., Any])  # a hook: returned as it was given
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class SubscriberSpec:
    """A ``@app.subscriber``: what ``redisq worker --mode pubsub`` calls for ``channel``."""

    channel: str
    handler: Callable[[Any], Any]
    durable: bool = False
    pattern: bool = False


class Registrations:
    """Tasks, periodic jobs, subscribers, hooks and middleware, registered by decorators."""

    #: The App's message builder: :meth:`periodic` builds a tick's message when it registers.
    messages: Messages

    def __init__(self) -> None:
        self.tasks: dict[str, AnyTask] = {}
        self._commit_hook: CommitHook | None = None  # what delay_on_commit queues through
        self.subscribers: dict[str, SubscriberSpec] = {}
        self.durable_channels: set[str] = set()
        self.hooks = Hooks()
        self.periodic_jobs: dict[str, Periodic] = {}  # task name → its schedule

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: None = None, *, bind: Literal[False] = False,
             **options: Unpack[TaskKwargs]) -> TaskDecorator: ...
    @overload
    def task(self, fn: None = None, *, bind: Literal[True],
             **options: Unpack[TaskKwargs]) -> BoundTaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
             queue: str = "default", retries: int = 3, timeout_s: float | None = 300.0,
             retry_backoff_s: float = 1.0, retry_backoff_cap_s: float = 600.0,
             unique_by: UniqueBy = None, on_duplicate: str = "return", bind: bool = False,
             dead_letter: bool = True, rate_limit: str | None = None,
             concurrency_limit: int | None = None) -> Any:
        """Register a task (``@app.task`` or ``@app.task(...)``) under ``module.function``
        or ``name``. Only registered tasks run in a worker. ``rate_limit="100/m"`` and
        ``concurrency_limit=2`` hold across every worker (see docs/control.md)."""
        opts = TaskOptions(queue, retries, timeout_s, retry_backoff_s, retry_backoff_cap_s,
                           unique_by, on_duplicate, bind, dead_letter, rate_limit,
                           concurrency_limit)

        def register(func: Callable[..., Any]) -> Task[..., Any]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            if task_name in self.tasks and self.tasks[task_name].fn is not func:
                raise ValueError(f"a different task is already registered as {task_name!r}")
            # App, the only subclass, is the Producer a task sends its calls through.
            task: AnyTask = Task(cast("Producer", self), func, task_name, opts)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(self, *, cron: str | None = None, every_s: float | None = None,
                 tz: str = "UTC", misfire: str = "once", misfire_grace_s: float = 60.0,
                 args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 name: str | None = None, queue: str = "default", **task_options: Any) -> Any:
        """Register a task that ``redisq scheduler`` (or ``worker --with-scheduler``) queues
        on a schedule: ``@app.periodic(cron="*/5 * * * *", tz="Europe/Paris")`` or
        ``@app.periodic(every_s=60)``. Each tick fires exactly once across schedulers; ticks
        missed while no scheduler ran follow ``misfire`` ("once", "all" or "skip") once older
        than ``misfire_grace_s``. Other keywords go to :meth:`task` (see docs/scheduling.md)."""
        # A bad schedule fails here, at import; arguments the task cannot take or JSON cannot
        # carry fail when the function is decorated.
        spec = Periodic("?", queue, cron, every_s, tz, misfire, misfire_grace_s, tuple(args),
                        dict(kwargs or {}))

        def decorate(func: Callable[..., Any]) -> Task[..., Any]:
            task: Task[..., Any] = self.task(name=name, queue=queue, **task_options)(func)
            # Build a tick's message now, so the first tick is not where a bad argument shows.
            # (Not through the middleware: no job is sent here.)
            self.messages.prepare(task.name, spec.args, spec.kwargs, queue,
                                  job_id(task.name, 0.0))
            self.periodic_jobs[task.name] = replace(spec, task=task.name)
            return task

        return decorate

    def subscriber(self, channel: str, *, durable: bool = False, pattern: bool = False) -> Any:
        """Register a handler for ``redisq worker --mode pubsub`` (``handler(message)``)."""
        keys.check_name(channel, "channel")

        def register(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.subscribers[channel] = SubscriberSpec(channel, func, durable, pattern)
            if durable:
                self.durable_channels.add(channel)
            return func

        return register

    @staticmethod
    def _hook(bucket: list[Callable[..., Any]], fn: F) -> F:
        bucket.append(fn)
        return fn

    def add_middleware(self, middleware: Any) -> None:
        """Install ``middleware``: an object with some of ``before_enqueue(envelope)``,
        ``after_enqueue(job)``, ``before_execute(job)``, ``after_execute(job, outcome)``,
        ``on_retry(job, outcome)``, ``on_dead(job, outcome)`` (see :mod:`redisq.middleware`
        and docs/middleware.md). Producers and workers of this App both use it."""
        self.hooks.middleware.add(middleware)

    def _job_hook(self, bucket: list[Callable[..., Any]], fn: F) -> F:
        """A job hook: sugar over one middleware, installed with the first hook (so an App
        without hooks or middleware pays nothing per job)."""
        if not self.hooks._job_hooks:
            self.hooks._job_hooks = True
            self.hooks.middleware.add(HookMiddleware(self.hooks.before_job, self.hooks.after_job,
                                                     self.hooks.on_failure))
        return self._hook(bucket, fn)

    def before_job(self, fn: F) -> F:
        """``fn(job_context)`` before each job (close stale DB connections here); an error
        fails the attempt."""
        return self._job_hook(self.hooks.before_job, fn)

    def after_job(self, fn: F) -> F:
        """``fn(job_context, outcome)`` after each attempt, whatever its outcome."""
        return self._job_hook(self.hooks.after_job, fn)

    def on_failure(self, fn: F) -> F:
        """``fn(job_context, exception)`` when an attempt raises."""
        return self._job_hook(self.hooks.on_failure, fn)

    def on_startup(self, fn: F) -> F:
        """``fn(worker)`` once when a worker starts."""
        return self._hook(self.hooks.startup, fn)

    def on_shutdown(self, fn: F) -> F:
        """``fn(worker)`` once when a worker stops."""
        return self._hook(self.hooks.shutdown, fn)

    @property
    def commit_hook(self) -> CommitHook | None:
        """What ``task.delay_on_commit`` queues through (None: it raises ConfigError)."""
        return self._commit_hook

    def use_commit_hook(self, hook: CommitHook | None) -> None:
        """``hook(callback)`` runs ``callback`` once the caller's database transaction commits
        (at once outside a transaction) and never if it rolls back: Django's
        ``transaction.on_commit``, which ``redisq.contrib.django`` installs, or an ORM's
        after-commit event. ``task.delay_on_commit`` enqueues through it."""
        self._commit_hook = hook


__all__ = ["Registrations", "SubscriberSpec"]
