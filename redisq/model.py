"""The pure model of a job: statuses, the message that travels (:class:`Envelope`), a reserved
message (:class:`Message`), how an attempt ended (:class:`Outcome`), ids and names.

Every layer speaks these words, so they live at the bottom: this module imports nothing of
redisq but :mod:`redisq.errors`, and nothing here touches Redis.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, cast

QUEUED, STARTED, SUCCEEDED, FAILED = "queued", "started", "succeeded", "failed"
RETRYING, DEAD, CANCELLED = "retrying", "dead", "cancelled"
DEFERRED = "deferred"  # waiting on other jobs (depends_on, a chord's callback): not queued yet
EXPIRED = "expired"  # not started by its deadline (``expires_s``): recorded, never run
#: Stopped by ``job.abort()`` while it ran (terminal, never retried); waiting in the delayed
#: set for a rate or concurrency limit slot (see docs/control.md).
ABORTED, THROTTLED = "aborted", "throttled"
STATUSES = (QUEUED, STARTED, SUCCEEDED, FAILED, RETRYING, DEAD, CANCELLED, EXPIRED,
            ABORTED, THROTTLED, DEFERRED)
#: Statuses after which a job never runs again (unless a dead job is requeued).
TERMINAL = frozenset({SUCCEEDED, FAILED, DEAD, CANCELLED, EXPIRED, ABORTED})

#: The per-call options a message may carry (``task.options(...)``, ``app.enqueue(...,
#: options=)``), each with the types it may have. They override the registered task's defaults
#: for that one job: ``retries`` (>= 0), ``timeout_s`` (> 0, or null: no limit),
#: ``result_ttl_s`` (> 0: the succeeded/cancelled/expired record's TTL) and ``expires_at``
#: (unix seconds, the producer's clock: an attempt not started by then is not run).
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "retries": (int,), "timeout_s": (int, float, type(None)), "result_ttl_s": (int, float),
    "expires_at": (int, float)}


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
    #: The caller's metadata (``task.options(headers=...)``, middleware such as tracing):
    #: a small JSON object, visible as ``current_job().headers`` and on the job record.
    headers: dict[str, Any] = field(default_factory=dict)
    #: Per-call overrides of the task's options (see :data:`OPTION_TYPES`).
    options: dict[str, Any] = field(default_factory=dict)
    #: The job's place in a workflow (chain step, group member; see redisq/canvas.py), or
    #: None: a JSON object the worker acts on when the job ends (backend/workflows.py).
    workflow: dict[str, Any] | None = None

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
        # Left out when empty, like args: most jobs carry neither.
        if self.headers:
            out["headers"] = self.headers
        if self.options:
            out["options"] = self.options
        if self.workflow is not None:
            out["workflow"] = self.workflow
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
                      unique=data.get("unique"), headers=data.get("headers", {}),
                      options=data.get("options", {}), workflow=data.get("workflow"))
        except KeyError as exc:
            raise BadMessage(f"job message lacks the field {exc.args[0]!r}") from None
        for name, kind in (("id", str), ("task", str), ("args", list), ("kwargs", dict),
                           ("queue", str), ("attempt", int), ("enqueued_at", (int, float)),
                           ("unique", (str, type(None))), ("headers", dict),
                           ("options", dict), ("workflow", (dict, type(None)))):
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
        if env.options:
            check_options(env.options, BadMessage)
        if env.headers and not all(isinstance(k, str) for k in env.headers):
            raise BadMessage("job message field 'headers' must have string keys")
        check_workflow(env.workflow)
        return env


def check_options(options: dict[str, Any], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first option of ``options`` that is unknown, of a wrong type
    or out of range (see :data:`OPTION_TYPES`); the producers' check and the workers' alike."""
    for name, value in options.items():
        kinds = OPTION_TYPES.get(name)
        if kinds is None:
            raise error(f"unknown job option {name!r} (known: {', '.join(OPTION_TYPES)})")
        # bool is an int to isinstance, but True is no number of retries.
        if not isinstance(value, kinds) or isinstance(value, bool):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise error(f"job option {name!r} must be {names}, not {value!r}")
        if value is None:
            continue
        number = float(cast(float, value))
        if not math.isfinite(number):
            raise error(f"job option {name!r} must be a finite number, not {value!r}")
        if (name == "retries" and number < 0) or (name in ("timeout_s", "result_ttl_s")
                                                   and number <= 0):
            raise error(f"job option {name!r} must be {'>= 0' if name == 'retries' else '> 0'}"
                        f", not {value!r}")


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended; built by the pure ``execute`` step, written by ``settle``."""

    status: str  # succeeded | failed | retrying | dead | cancelled | expired
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    retry_in_s: float = 0.0
    duration_s: float = 0.0
    result_json: str = "null"
    #: What the attempt raised (for middleware: error reporters want the object, not its
    #: text); None when it did not run or succeeded. Never written to Redis.
    exception: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Message:
    """A reserved message: the queue it came from and its body exactly as stored."""

    queue: str
    body: bytes
    #: With ``Consumer(mark_jobs=...)``: the job's status before this reservation marked it
    #: started ('' no record, '?' not a job); None when it was not marked (a blocking move).
    before: str | None = None
    #: The consumer's epoch token on this queue when the message was reserved (None: not
    #: known); its later steps show this token and are refused once that epoch has ended.
    token: str | None = None


def as_text(value: bytes | str, errors: str = "strict") -> str:
    """A Redis reply as text (redisq's clients return bytes; a str passes through)."""
    return value.decode("utf-8", errors) if isinstance(value, bytes) else value


def as_bytes(body: bytes | str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    raise TypeError(f"a message body is bytes or str, not {type(body).__name__}")


MAX_NAME_BYTES = 128
# Whitespace would split CLI and log lines; braces would change the key's Cluster hash tag.
_BAD_CHAR = re.compile(r"[\s{}]")


def check_name(name: str, what: str = "queue") -> str:
    """Return ``name`` if it is a usable queue/channel name, else raise ``ValueError``: 1 to
    128 bytes of printable characters (no control characters, which could reach a terminal
    through ``redisq info``), without whitespace or braces."""
    if (type(name) is str and 0 < len(name) <= MAX_NAME_BYTES and name.isprintable()
            and _BAD_CHAR.search(name) is None
            and (name.isascii() or len(name.encode()) <= MAX_NAME_BYTES)):
        return name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")
    raise ValueError(f"{what} name {name!r} must be 1 to {MAX_NAME_BYTES} bytes of printable "
                     "characters without whitespace or braces")


def valid_name(name: str) -> bool:
    """Whether ``name`` passes :func:`check_name` (for readers that skip what they cannot
    show, e.g. a name written into Redis by something other than redisq)."""
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def check_workflow(data: Any) -> None:
    """Raise :class:`BadMessage` unless ``data`` is a workflow field a worker can act on."""
    if data is None:
        return
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise BadMessage("job message field 'workflow' must be an object with an 'id'")
    kind = data.get("kind")
    if kind == "member":
        index, queue = data.get("index"), data.get("queue")
        if (not isinstance(index, int) or isinstance(index, bool) or index < 0
                or not isinstance(queue, str) or not valid_name(queue)
                or not isinstance(data.get("callback", ""), str)):
            raise BadMessage("a group member's 'workflow' needs 'index' (int >= 0) and 'queue'")
    elif kind == "chain":
        step, rest = data.get("step"), data.get("next")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0 \
                or not isinstance(rest, list):
            raise BadMessage("a chain step's 'workflow' needs 'step' (int >= 0) and 'next'")
        for i, sig in enumerate(rest):
            if isinstance(sig, dict) and "group" in sig and i == len(rest) - 1:
                check_group_spec(sig)  # a group (or chord) may end a chain
            else:
                check_signature(sig)
    else:
        raise BadMessage(f"unknown workflow kind {kind!r}")


def check_signature(sig: Any) -> None:
    """Raise :class:`BadMessage` unless ``sig`` is a signature's JSON (task, args, kwargs,
    queue)."""
    if (not isinstance(sig, dict) or not isinstance(sig.get("task"), str) or not sig["task"]
            or not isinstance(sig.get("args", []), list)
            or not isinstance(sig.get("kwargs", {}), dict)
            or not valid_name(sig.get("queue", "default"))):
        raise BadMessage("a signature is an object with 'task' (and 'args', 'kwargs', 'queue')")


def check_group_spec(spec: dict[str, Any]) -> None:
    """Raise :class:`BadMessage` unless ``spec`` is a group ending a chain: ``{"group":
    [signature, ...], "then"?: signature, "on_failure"?: "fail" | "skip" | "run"}``."""
    members = spec.get("group")
    if (not isinstance(members, list) or not members
            or spec.get("on_failure", "fail") not in ("fail", "skip", "run")
            or set(spec) - {"group", "then", "on_failure"}):
        raise BadMessage("a chain's final group needs 'group' (signatures), optional 'then' "
                         "and 'on_failure'")
    for sig in members:
        check_signature(sig)
    if spec.get("then") is not None:
        check_signature(spec["then"])
