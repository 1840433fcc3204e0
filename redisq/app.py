"""The :class:`App`: the registry of tasks and subscribers (:mod:`redisq.registration`), and
the producer API.

>>> app = App("redis://localhost:6379/0")   # App() alone: $REDISQ_URL, $REDIS_URL, else that
>>> @app.task(queue="default", retries=3, timeout_s=300)
... def rebuild_index(project_id: int) -> dict: ...
>>> job = rebuild_index.delay(42)

Creating an App connects to nothing; the first Redis call does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis

from . import config, limits, serializers
from .backend import control, index, keys
from .backend.connection import ConnectionOptions, connect, resolve_url
from .backend.records import Records
from .backend.scripts import Scripts
from .backend.urls import is_embedded
from .broker.channel import Channel
from .broker.queue import Queue
from .canvas import Signature
from .dependencies import enqueue_deferred
from .eager import EagerRecords, EagerRunner
from .errors import ConfigError
from .job import Job
from .locks import Lock
from .middleware import Hooks
from .model import new_id
from .producer import Messages, Prepared, delay_from, job_for
from .registration import Registrations, SubscriberSpec

log = logging.getLogger("redisq.app")

BULK_CHUNK = 500  # jobs per enqueue_many script call: big enough to amortise, short enough for Redis


class App(Registrations):
    """Tasks, subscribers and hooks (registered through :class:`Registrations`), plus the
    producer side: enqueue, publish, jobs, locks."""

    def __init__(self, url: str | None = None, *, serializer: str = "json",
                 result_ttl_s: float = 86_400.0, failure_ttl_s: float = 604_800.0,
                 dead_max: int = 10_000, options: ConnectionOptions | None = None,
                 events: bool = True, wait_replicas: int = 0,
                 wait_timeout_s: float = 1.0, args_summary_bytes: int = 48,
                 max_message_bytes: int = limits.DEFAULT_MAX_MESSAGE_BYTES,
                 eager: bool | None = None, eager_raise: bool = True) -> None:
        """``wait_replicas``: durable enqueue. With N > 0, ``enqueue`` (and ``enqueue_many``,
        ``task.map``) returns only once N replicas have the job (``WAIT`` on the same
        connection, same round trip), else raises :class:`NotReplicated`; asynchronous
        replication alone can lose a job acknowledged just before a failover (docs/scaling.md).
        ``args_summary_bytes``: how much of its arguments a succeeded, cancelled or dead job's
        record keeps (0 none, -1 the whole message; docs/deployment.md, sizing).

        ``max_message_bytes``: the largest encoded message (job or published) a producer
        sends and a worker parses (``MessageTooLarge`` beyond it; workers dead-letter it).

        ``eager`` (default: ``$REDISQ_EAGER``, else off): tests only. ``delay``/``enqueue``/
        ``map`` run the task inline in the caller's thread, through the worker's decode,
        execute and retry steps (delays skipped), and return the finished job; no Redis is
        used. ``eager_raise``: a job that fails for good raises its exception there (else it
        is recorded, and ``job.result()`` raises :class:`JobFailed`). See :mod:`redisq.eager`
        and docs/testing.md."""
        self._url = url
        self.serializer = serializers.get(serializer)
        self.options = options or ConnectionOptions()
        self.result_ttl_s = result_ttl_s
        self.failure_ttl_s = failure_ttl_s
        self.dead_max = dead_max
        self.args_summary_bytes = args_summary_bytes
        self.events = events
        self.wait_replicas = wait_replicas
        self.wait_timeout_s = wait_timeout_s
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) \
                or max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be a positive int, not {max_message_bytes!r}")
        self.max_message_bytes = max_message_bytes
        #: Most job ids each per-queue status index keeps (0: none; ``index_max`` setting).
        self.index_max = 10_000
        super().__init__()  # tasks, subscribers, hooks, periodic jobs: empty
        self.messages = Messages(self.serializer, self.tasks, lambda: self.max_message_bytes)
        self.eager = config.eager_from_env() if eager is None else bool(eager)
        #: An eager App's runner and in-memory records (None: jobs go to Redis).
        self.eager_runner: EagerRunner | None = None
        if self.eager:
            self.eager_runner = EagerRunner(self.tasks, self.hooks, self.serializer,
                                            lambda: self.max_message_bytes, eager_raise,
                                            EagerRecords())
        self._client: redis.Redis | None = None
        self._records: Records | None = None
        # Held while the client or records are made or dropped: threads that use a fresh App
        # at once (job threads, web requests) must get one client. With two, the one stored
        # second replaces the first, and the first's Redis.__del__ closes its pool, in-use
        # connections included, under the thread still using it.
        self._making = threading.RLock()
        _APPS.add(self)
        self._client_factory: Callable[[str], redis.Redis] | None = None

    # -- connection --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The Redis URL in use: the one given, else ``$REDISQ_URL``, ``$REDIS_URL``, else
        ``redis://127.0.0.1:6379/0``; ``"embedded"`` starts (or reuses) the embedded server."""
        if self._url is None or is_embedded(self._url):
            self._url = resolve_url(self._url)
        return self._url

    def use_url(self, url: str) -> None:
        """Point this App at ``url`` (``--url``/``REDISQ_URL`` win over the URL an application
        module gave it). A client it made already for another URL is closed, so the next
        Redis call goes to ``url``: a module that used its App on import, or an App loaded
        again in the same process (tests, ``redisq enqueue --app``), must not keep talking
        to the old server."""
        if url != self._url:
            self.close()
        self._url = url

    def connect(self, role: str = "producer",
                options: ConnectionOptions | None = None) -> redis.Redis:
        """A new client for this app's Redis (workers make their own, named by role;
        ``options``: instead of the App's)."""
        if self._client_factory is not None:
            return self._client_factory(role)
        return connect(self.url, role=role, options=options or self.options)

    def use_client_factory(self, factory: Callable[[str], redis.Redis] | None) -> None:
        """Make every client of this App, its producer's and those of workers run in this
        process, with ``factory(role)`` instead of from its URL (None: from the URL again).
        For tests on fakeredis (:mod:`redisq.testing`); a worker in another process still
        uses the URL."""
        self.close()
        self._client_factory = factory

    @property
    def client(self) -> redis.Redis:
        """This App's own client, made on first use (safe from any thread)."""
        client = self._client
        if client is None:
            with self._making:
                client = self._client
                if client is None:
                    client = self._client = self.connect("producer")
        return client

    @property
    def records(self) -> Records:
        records = self._records
        if records is None:
            with self._making:
                records = self._records
                if records is None:
                    records = self._records = self.make_records(self.client)
        return records

    def make_records(self, client: redis.Redis) -> Records:
        records = Records(client, Scripts(client), self.result_ttl_s, self.failure_ttl_s,
                          self.dead_max, self.events, self.args_summary_bytes)
        records.max_message_bytes = self.max_message_bytes
        records.index_max = self.index_max
        return records

    def close(self) -> None:
        """Close this App's client (the next Redis call makes a new one). In a forked child,
        the inherited connections are abandoned, not shut down: redis-py's pool sees the new
        pid and starts afresh, so the parent's sockets stay usable."""
        with self._making:
            client, self._client, self._records = self._client, None, None
        if client is not None:
            client.close()

    # -- producing ---------------------------------------------------------------------------
    def enqueue(self, task_name: str, args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None, *, queue: str | None = None,
                delay_s: float | None = None, job_id: str | None = None,
                eta: datetime | float | None = None,
                options: Mapping[str, Any] | None = None,
                depends_on: Sequence[Any] | None = None) -> Job[Any]:
        """Queue a call of ``task_name`` (registered here or only in the worker); an eager
        App runs it now and returns it finished (``delay_s``/``eta`` ignored).
        ``options``: per-call options (:class:`~redisq.tasks.CallOptions`: ``queue``,
        ``timeout_s``, ``retries``, ``expires_s``, ``result_ttl_s``, ``job_id``, ``headers``),
        carried in the message, so a producer that does not import the task can set them.
        ``depends_on``: queue it only once all these jobs succeeded (docs/workflows.md)."""
        if depends_on is not None and (delay_s is not None or eta is not None):
            raise ValueError("depends_on cannot be combined with a delay")
        delay_s = delay_from(delay_s, eta)
        prepared = self.prepare(task_name, args, kwargs, queue, job_id, options, delay_s)
        if depends_on is not None:
            if self.eager_runner is not None:
                raise ConfigError("depends_on needs Redis: eager mode does not run it")
            return enqueue_deferred(self, prepared, depends_on)
        if self.eager_runner is not None:
            return self.eager_runner.run(prepared)
        self.records.register_queue(prepared.env.queue)
        if (prepared.fresh_id and prepared.env.unique is None and delay_s is None
                and self.records.transactions):
            self.records.enqueue_fresh(prepared.env, prepared.message, self.wait_replicas,
                                       self.wait_timeout_s)
            return self.finish_enqueue(prepared, True, prepared.env.id)
        name, ks, argv = self.records.enqueue_call(prepared.env, prepared.message, delay_s,
                                                   prepared.unique_ttl_s, prepared.fresh_id)
        if self.wait_replicas:
            created, jid = self.records.scripts.run_replicated(
                name, ks, argv, self.wait_replicas, self.wait_timeout_s)
        else:
            created, jid = self.records.scripts.run(name, ks, argv)
        return self.finish_enqueue(prepared, bool(created), jid)

    def prepare(self, task_name: str, args: Sequence[Any], kwargs: dict[str, Any] | None,
                queue: str | None, job_id: str | None, options: Mapping[str, Any] | None = None,
                delay_s: float | None = None) -> Prepared:
        """Validate a call and build its message (pure: see :meth:`Messages.prepare`), as
        the middleware's ``before_enqueue`` leaves it."""
        mw = self.hooks.middleware
        edit = mw.before_enqueue if mw.items and mw.has("before_enqueue") else None
        return self.messages.prepare(task_name, args, kwargs, queue, job_id, options, delay_s,
                                     edit)

    def finish_enqueue(self, prepared: Prepared, created: bool, job_id: bytes | str) -> Job[Any]:
        """The Job handle for an enqueue's answer (or the duplicate rule's error); the
        middleware's ``after_enqueue`` sees it."""
        job = job_for(self.records, prepared, created, job_id)
        if self.hooks.middleware.items:
            self.hooks.middleware.after_enqueue(job)
        return job

    def enqueue_many(self, task_name: str,
                     calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
                     queue: str | None = None,
                     options: Mapping[str, Any] | None = None) -> list[Job[Any]]:
        """Queue many calls of one task in as few round trips as possible, each with
        ``options`` (as :meth:`enqueue`'s, but no ``job_id``)."""
        options = dict(options or {})
        if "job_id" in options:
            raise TypeError("enqueue_many queues many jobs: a job_id option cannot apply to all")
        queue = queue or options.pop("queue", None)
        if self.eager_runner is not None:  # every call validated before any runs, as below
            prepared = [self.prepare(task_name, a, k, queue, None, options) for a, k in calls]
            return [self.eager_runner.run(p) for p in prepared]
        task = self.tasks.get(task_name)
        q = keys.check_name(queue or (task.options.queue if task else "default"))
        if task is not None and task.options.unique_by is not None:
            return [self.enqueue(task_name, a, k, queue=q, options=options) for a, k in calls]
        now = round(time.time(), 3)
        mw = self.hooks.middleware
        headers_of: dict[str, str] = {}  # job id -> its headers, for its record
        message = self.messages.bulk_builder(
            task_name, q, now, options,
            mw.before_enqueue if mw.items and mw.has("before_enqueue") else None, headers_of)
        jobs: list[Job[Any]] = []
        batch: list[tuple[str, bytes]] = []
        # Everything is validated and encoded before anything is sent: a bad call anywhere
        # in ``calls`` queues nothing.
        # Ids: one random prefix per call and a counter (a syscall per job otherwise); still
        # 32 hex digits, 96 random bits shared by at most 2**32 jobs of this call.
        prefix = new_id()[:24]
        for n, (args, kwargs) in enumerate(calls):
            if task is not None:
                task.check_args(args, kwargs)
            jid = f"{prefix}{n:08x}"
            batch.append((jid, message(jid, args, kwargs)))
            jobs.append(Job(self.records, jid, q))
        self.records.register_queue(q)  # (after the checks: a refused call leaves no trace)
        calls_out = []
        for i in range(0, len(batch), BULK_CHUNK):
            part = batch[i:i + BULK_CHUNK]
            ks = [keys.pending(q), keys.stats(q), *(keys.job(q, jid) for jid, _ in part)]
            heads = [headers_of.get(jid, "") for jid, _ in part] if headers_of else []
            calls_out.append(("enqueue_many", ks, [task_name, repr(now), *(m for _, m in part),
                                                   *heads]))
        for i in range(0, len(calls_out), 20):
            self.records.scripts.run_many(calls_out[i:i + 20], self.wait_replicas,
                                          self.wait_timeout_s)
        if mw.items:
            for job in jobs:
                mw.after_enqueue(job)
        return jobs

    def signature(self, task_name: str, args: Sequence[Any] = (),
                  kwargs: dict[str, Any] | None = None, queue: str | None = None) -> Signature:
        """A signature of ``task_name`` by name (the task need not be registered here), for
        :func:`redisq.chain` and :func:`redisq.group`."""
        return Signature(task_name, tuple(args), dict(kwargs or {}), queue, self)

    def job(self, job_id: str, queue: str | None = None) -> Job[Any] | None:
        """The handle of an existing job, or None when no queue has a record for it."""
        if self.eager_runner is not None:
            store = self.eager_runner.records
            q = queue or store.find_queue(job_id)
            return Job(store, job_id, q) if q is not None and store.status(q, job_id) else None
        q = queue or self.records.find_queue(job_id)
        if q is None or not self.records.status(q, job_id):
            return None
        return Job(self.records, job_id, q)

    def pause(self, queue: str) -> bool:
        """Stop workers taking jobs from ``queue`` (within 0.5 s; queued jobs stay as they
        are); returns False if it was paused already."""
        return control.pause(self.client, queue)

    def resume(self, queue: str) -> bool:
        """Let workers take from ``queue`` again; returns False if it was not paused."""
        return control.resume(self.client, queue)

    def paused(self) -> set[str]:
        """The paused queues."""
        return control.paused(self.client)

    def queue(self, name: str) -> Queue:
        return Queue(self.client, name, self.records.scripts)

    def queues(self) -> list[str]:
        return index.known(self.client)

    def requeue_dead(self, queue: str, limit: int | None = None,
                     job_ids: Sequence[str] | None = None) -> int:
        return self.records.requeue_dead(queue, limit, job_ids)

    def publish(self, channel: str, message: Any, durable: bool | None = None) -> int:
        """Send ``message`` (JSON) to every subscriber of ``channel``; returns how many got it.
        Durable channels (``@app.subscriber(..., durable=True)`` or ``durable=True`` here) also
        keep it in a capped stream for subscribers that were cut off."""
        is_durable = channel in self.durable_channels if durable is None else durable
        data = self.encode_message(message)
        return Channel(self.client, channel, durable=is_durable,
                       scripts=self.records.scripts).publish(data)

    def encode_message(self, message: Any) -> bytes:
        """A published message, encoded and checked against ``max_message_bytes`` and
        :data:`~redisq.limits.MAX_DEPTH` (raises ``MessageTooLarge`` / ``MessageTooDeep``)."""
        data = self.serializer.dumps(message)
        return limits.check_message(data, self.max_message_bytes, limits.MAX_DEPTH,
                                    self.serializer.name, message)

    def lock(self, name: str, ttl_s: float = 30.0, wait_s: float | None = None,
             auto_renew: bool = True) -> Lock:
        """A lease-based distributed mutex (``with app.lock("project:7"): ...``)."""
        return Lock(self.client, name, ttl_s, wait_s, auto_renew, self.records.scripts)


_APPS: weakref.WeakSet[App] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held an App's lock at the fork: it never lets go here.
    for app in list(_APPS):
        app._making = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["App", "Hooks", "SubscriberSpec"]
