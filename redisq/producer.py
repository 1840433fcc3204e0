"""Producing, the part the :class:`redisq.App` and the asyncio producer share: validate a call
and build its message (pure: no Redis), and turn an enqueue's answer into a :class:`Job`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import limits, serializers
from .backend import keys
from .backend.records import Records
from .job import Job
from .model import Envelope, check_options
from .tasks import AnyTask, check_call_options, duplicate, make_envelope

#: ``edit(envelope) -> envelope``: what middleware makes of a job before it is encoded.
Edit = Callable[[Envelope], Envelope]

log = logging.getLogger("redisq.app")

_JOB_DEPTH = limits.MAX_DEPTH + limits.JOB_WRAPPING  # a job message's own nesting limit


@dataclass(frozen=True)
class Prepared:
    """A validated call, ready to send: its task (if registered here), envelope and message."""

    task: AnyTask | None
    env: Envelope
    message: bytes
    unique_ttl_s: float
    fresh_id: bool = False  # generated here: no record can exist under it yet


class Messages:
    """Validates calls and builds their messages, for one app's tasks, serializer and size cap
    (``max_bytes()``: read at each call, so a cap set on the App later applies)."""

    def __init__(self, serializer: serializers.Serializer, tasks: dict[str, AnyTask],
                 max_bytes: Callable[[], int]) -> None:
        self.serializer = serializer
        self.tasks = tasks
        self.max_bytes = max_bytes
        self._json_templates: dict[tuple[str, str], serializers.JobEncoder] = {}

    def prepare(self, task_name: str, args: Sequence[Any], kwargs: dict[str, Any] | None,
                queue: str | None, job_id: str | None, options: Mapping[str, Any] | None = None,
                delay_s: float | None = None, edit: Edit | None = None) -> Prepared:
        """Validate a call and build its message (pure: no Redis). Raises ``TypeError`` for
        arguments the task cannot take or unknown ``options`` (:class:`~redisq.tasks.
        CallOptions`), ``ValueError`` for option values out of range,
        ``SerializationError`` for values JSON cannot carry, and
        :class:`~redisq.limits.MessageTooLarge` / :class:`~redisq.limits.MessageTooDeep` /
        :class:`~redisq.limits.HeadersTooLarge` (also ``ValueError``) beyond the size caps or
        :data:`~redisq.limits.MAX_DEPTH`. ``edit``: the middleware's ``before_enqueue``."""
        headers: dict[str, Any] = {}
        wire: dict[str, Any] = {}
        if options:
            queue, job_id, headers, wire = split_options(options, queue, job_id, delay_s)
        task = self.tasks.get(task_name)
        check_call(task_name, args, kwargs, job_id)
        kwargs = dict(kwargs or {})
        q = keys.check_name(queue or (task.options.queue if task else "default"))
        unique = None
        if task is not None:
            task.check_args(args, kwargs)
            unique = task.unique_key(args, kwargs)
        env = make_envelope(task_name, q, args, kwargs, job_id, unique, headers, wire)
        if edit is not None:
            env = edit(env)
        if (unique is None and job_id is None and self.serializer.name == "json"
                and not env.headers and not env.options and edit is None):
            # (A caller's job id goes through the encoder: it escapes what the template would
            # copy as is.)
            message = self._json_message(task_name, q)(env.id, args, kwargs, env.enqueued_at)
        else:
            message = self.serializer.dumps(env.to_dict())
        self.check_job(message, env)
        return Prepared(task, env, message, unique_ttl_s(task), fresh_id=job_id is None)

    def bulk_builder(self, task_name: str, queue: str, now: float,
                     options: Mapping[str, Any] | None = None, edit: Edit | None = None,
                     headers_of: dict[str, str] | None = None,
                     ) -> Callable[[str, Sequence[Any], dict[str, Any]], bytes]:
        """``message(job_id, args, kwargs)`` for many jobs of one task enqueued at ``now``,
        each with ``options`` (no ``queue`` or ``job_id`` among them) and ``edit``ed;
        ``headers_of`` gets each job's headers as JSON (for its record), if it has any."""
        check = self.check_job
        headers: dict[str, Any] = {}
        wire: dict[str, Any] = {}
        if options:
            _, _, headers, wire = split_options(options, None, None, None)
        if self.serializer.name == "json" and not headers and not wire and edit is None:
            encode = self._json_message(task_name, queue)
            return lambda jid, args, kwargs: check(encode(jid, args, kwargs, now))
        dumps = self.serializer.dumps

        def generic(jid: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
            env = replace(make_envelope(task_name, queue, args, kwargs, jid, None, dict(headers),
                                       dict(wire)),
                          enqueued_at=now)
            if edit is not None:
                env = edit(env)
            if env.headers and headers_of is not None:
                headers_of[jid] = limits.headers_json(env.headers)
            return check(dumps(env.to_dict()), env)
        return generic

    def check_job(self, message: bytes, env: Envelope | None = None) -> bytes:
        """``message`` if within the limits (``env``: what it encodes, for non-JSON)."""
        json_ = self.serializer.name == "json"
        max_bytes = self.max_bytes()
        # The hot path inline: small, and too few brackets to nest too deep.
        if (json_ and len(message) <= max_bytes
                and message.count(b"[") + message.count(b"{") <= _JOB_DEPTH):
            return message
        return limits.check_message(message, max_bytes, _JOB_DEPTH, self.serializer.name,
                                    None if json_ or env is None else env.to_dict(), "job message")

    def _json_message(self, task_name: str, queue: str) -> serializers.JobEncoder:
        """The cached :func:`serializers.job_encoder` of ``task_name`` on ``queue``."""
        encode = self._json_templates.get((task_name, queue))
        if encode is None:
            encode = serializers.job_encoder(self.serializer, task_name, queue)
            if len(self._json_templates) < 1024:  # bounded: task and queue names come from code
                self._json_templates[(task_name, queue)] = encode
        return encode


def job_for(records: Records, prepared: Prepared, created: bool, job_id: bytes | str) -> Job[Any]:
    """The Job handle for an enqueue's answer (or the duplicate rule's error)."""
    jid = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
    env = prepared.env
    job: Job[Any] = Job(records, jid, env.queue, created)
    if not created:
        log.info("job=%s task=%s queue=%s duplicate of a queued or running job",
                 jid, env.task, env.queue)
        return duplicate(prepared.task, job)
    log.debug("job=%s task=%s queue=%s enqueued", jid, env.task, env.queue)
    return job


def split_options(options: Mapping[str, Any], queue: str | None, job_id: str | None,
                  delay_s: float | None) -> tuple[str | None, str | None, dict[str, Any],
                                                  dict[str, Any]]:
    """``(queue, job_id, headers, message options)`` of a call's :class:`~redisq.tasks.
    CallOptions`: ``expires_s`` becomes the absolute ``expires_at`` (counted from when the job
    is due), the others are checked as a worker will check them."""
    opts = check_call_options(options)
    for name, given in (("queue", queue), ("job_id", job_id)):
        if name in opts:
            value = opts.pop(name)
            if given is not None and given != value:
                raise TypeError(f"{name} given twice: {given!r} and options[{name!r}]={value!r}")
            if name == "queue":
                queue = value
            else:
                job_id = value
    headers = opts.pop("headers", None) or {}
    if headers:
        limits.headers_json(headers)
    expires_s = opts.pop("expires_s", None)
    if expires_s is not None:
        if (isinstance(expires_s, bool) or not isinstance(expires_s, (int, float))
                or not math.isfinite(expires_s) or expires_s <= 0):
            raise ValueError(f"job option 'expires_s' must be a number > 0, not {expires_s!r}")
        opts["expires_at"] = round(time.time() + max(delay_s or 0.0, 0.0) + expires_s, 3)
    check_options(opts, ValueError)
    return queue, job_id, dict(headers), opts


def check_call(task_name: Any, args: Any, kwargs: Any, job_id: Any) -> None:
    """Refuse what would reach a worker as a malformed message (and be dead-lettered there)."""
    if not isinstance(task_name, str) or not task_name:
        raise TypeError(f"a task name is a non-empty string, not {task_name!r}")
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    if job_id is not None:
        # reserve.lua finds the id in the message by a pattern: no quote or backslash in it.
        keys.check_name(job_id, "job id")
        if '"' in job_id or "\\" in job_id:
            raise ValueError(f"job id {job_id!r} must not contain quotes or backslashes")


def delay_from(delay_s: float | None, eta: datetime | float | None) -> float | None:
    if eta is None:
        return delay_s
    when = eta.timestamp() if isinstance(eta, datetime) else float(eta)
    return max(when - time.time(), 0.0)


def unique_ttl_s(task: AnyTask | None) -> float:
    """Safety lease of a unique key, counted from when the job is due (the enqueue adds any
    delay): the worker deletes the key when the job ends, and an enqueue takes over a key
    whose job is over, so this only bounds how long a key can outlive a lost job. It covers
    every try with its backoff, and at least a day of waiting in the queue: a key that
    expired while its job still waited would let a duplicate in."""
    if task is None or task.options.unique_by is None:
        return 86_400.0
    opts = task.options
    per_try = opts.timeout_s or 3600.0
    return max(86_400.0, per_try * (opts.retries + 1) + opts.retry_backoff_cap_s * opts.retries)
