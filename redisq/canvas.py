"""Workflows: signatures (``task.s(...)``), :func:`chain`, :func:`group`, chords
(``group(...).then(callback)``) and ``depends_on``. See docs/workflows.md.

>>> chain(fetch.s(url), parse.s(), store.s(table="pages")).delay()  # doctest: +SKIP
>>> group(resize.s(img, w) for w in (64, 128, 256)).then(notify.s(7)).delay()  # doctest: +SKIP

A signature is JSON (task name, args, kwargs, queue), so a workflow can be built by name by a
producer that does not import the tasks (``app.signature("name", ...)``, ``Signature.from_dict``)
and sent over the web API. The Redis side, and why each step happens once, is in
:mod:`redisq.backend.workflows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import redis

from . import serializers
from .backend import keys, workflows
from .backend.records import Records
from .errors import ConfigError
from .job import Job
from .model import (
    BadMessage,
    Envelope,
    check_signature,
    new_id,
)
from .workflow_jobs import ChainJob, GroupJob

log = logging.getLogger("redisq.app")
ENQUEUE_CHUNK = 500  # member enqueues per pipelined round trip


class MessageChecker(Protocol):
    def check_job(self, message: bytes, env: Envelope | None = None) -> bytes: ...
    def bulk_builder(self, task_name: str, queue: str,
                     now: float) -> Callable[[str, Sequence[Any], dict[str, Any]], bytes]: ...


class WorkflowApp(Protocol):
    """What a workflow is sent through (an :class:`redisq.App`)."""

    serializer: serializers.Serializer
    tasks: dict[str, Any]

    @property
    def messages(self) -> MessageChecker: ...

    @property
    def client(self) -> redis.Redis: ...
    @property
    def records(self) -> Records: ...
    def prepare(self, task_name: str, args: Sequence[Any], kwargs: dict[str, Any] | None,
                queue: str | None, job_id: str | None) -> Any: ...
    def enqueue(self, task_name: str, args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None, *, queue: str | None = None,
                job_id: str | None = None) -> Job[Any]: ...


@dataclass(frozen=True)
class Signature:
    """A task call not sent yet: task name, arguments and queue (``task.s(...)``). In a chain
    each step's result is prepended to the next step's arguments; a chord's callback gets the
    list of its group's results first."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    app: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task}
        if self.args:
            out["args"] = list(self.args)
        if self.kwargs:
            out["kwargs"] = dict(self.kwargs)
        if self.queue is not None:
            out["queue"] = self.queue
        return out

    @classmethod
    def from_dict(cls, data: Any, app: Any = None) -> Signature:
        """A signature from its JSON (raises ``ValueError`` on a malformed one)."""
        try:
            check_signature(data)
        except BadMessage as exc:
            raise ValueError(str(exc)) from None
        return cls(data["task"], tuple(data.get("args", ())), dict(data.get("kwargs", {})),
                   data.get("queue"), app)

    def set(self, *, queue: str) -> Signature:
        """The same call on another queue (Celery's ``sig.set(queue=...)``)."""
        return replace(self, queue=keys.check_name(queue))

    def delay(self, app: Any = None) -> Job[Any]:
        """Send this call as a plain job."""
        a: WorkflowApp = _app_of([self], app)
        return a.enqueue(self.task, self.args, self.kwargs, queue=self.queue)

    def __or__(self, other: Signature | Chain) -> Chain:
        return chain(self, other)


def chain(*steps: Signature | Chain | Group | Chord) -> Chain:
    """Steps run one after the other; each result becomes the next step's first argument. A
    group (or chord) may end the chain: each member gets the last step's result first."""
    flat: list[Signature] = []
    ending: Group | Chord | None = None
    for step in steps:
        if ending is not None:
            raise ValueError("a group can only end a chain (use .then(...) for what follows)")
        if isinstance(step, Chain):
            flat += step.steps
            ending = step.ending
        elif isinstance(step, (Group, Chord)):
            ending = step
        else:
            flat.append(_signature(step))
    if not flat:
        raise ValueError("a chain starts with a signature (a group alone: group(...).delay())")
    return Chain(tuple(flat), ending)


def group(members: Iterable[Signature]) -> Group:
    """Members run in parallel; ``.then(callback)`` makes a chord."""
    return Group(tuple(_signature(m) for m in members))


def _signature(value: Any) -> Signature:
    if not isinstance(value, Signature):
        raise TypeError(f"a workflow step is a signature (task.s(...)), not {type(value).__name__}")
    if (not isinstance(value.task, str) or not value.task
            or not isinstance(value.args, (tuple, list)) or not isinstance(value.kwargs, dict)):
        raise TypeError(f"a signature needs a task name, args and kwargs: {value!r}")
    return value


def _app_of(sigs: Sequence[Signature], app: Any) -> Any:
    found = app or next((s.app for s in sigs if s.app is not None), None)
    if found is None:
        raise ValueError("no App: build signatures with task.s(...) / app.signature(...), "
                         "or pass app=")
    if getattr(found, "eager_runner", None) is not None:
        raise ConfigError("workflows need Redis: an eager App does not run chains or groups")
    return found


def _queue_of(app: WorkflowApp, sig: Signature) -> str:
    task = app.tasks.get(sig.task)
    return sig.queue or (task.options.queue if task is not None else "default")


def _check(app: WorkflowApp, sig: Signature, extra_first: bool) -> None:
    """Refuse now a step that could not take its arguments (plus the result it will get)."""
    task = app.tasks.get(sig.task)
    if task is not None:
        check_not_unique(task)
        task.check_args([None, *sig.args] if extra_first else sig.args, sig.kwargs)


def check_not_unique(task: Any) -> None:
    """Workflows refuse unique tasks: an enqueue refused as a duplicate would leave a group one
    member short, or a chain without its step, for ever."""
    if task.options.unique_by is not None:
        raise ValueError(f"{task.name} is a unique task (unique_by): it cannot be part of a "
                         "workflow")


def _send(app: WorkflowApp, sig: Signature, job_id: str, args: Sequence[Any],
          workflow: dict[str, Any] | None) -> tuple[Envelope, bytes, Any]:
    """The envelope and message of one workflow job (validated like any enqueue)."""
    prepared = app.prepare(sig.task, args, sig.kwargs, _queue_of(app, sig), job_id)
    env = prepared.env if workflow is None else replace(prepared.env, workflow=workflow)
    if workflow is None:
        return env, prepared.message, prepared
    if app.serializer.name == "json" and prepared.message.endswith(b"}"):
        # The workflow field added to the JSON object prepare() built, rather than encoding
        # the whole message again: half of what queueing a group member costs otherwise.
        message = (prepared.message[:-1] + b',"workflow":'
                   + app.serializer.dumps(workflow) + b"}")
    else:
        message = app.serializer.dumps(env.to_dict())
    return env, app.messages.check_job(message, env), prepared


def _member_items(app: WorkflowApp, members: Sequence[Signature], group_id: str,
                  wf: dict[str, Any]) -> list[tuple[Envelope, bytes, Any]]:
    """The members' envelopes and messages. JSON ones come from their task's cached message
    template (as ``task.map``'s do) with the workflow field added: a quarter of what building
    each through ``prepare`` costs. Other serializers, and apps with ``before_enqueue``
    middleware, go through :func:`_send`."""
    now = round(time.time(), 3)
    builders: dict[tuple[str, str], Callable[[str, Sequence[Any], dict[str, Any]], bytes]] = {}
    out = []
    mw = getattr(getattr(app, "hooks", None), "middleware", None)
    edits = mw is not None and bool(mw.items) and mw.has("before_enqueue")
    for i, m in enumerate(members):
        member_wf, jid = {**wf, "index": i}, f"{group_id}-{i}"
        if app.serializer.name != "json" or edits:  # (prepare applies before_enqueue)
            out.append(_send(app, m, jid, m.args, member_wf))
            continue
        q = keys.check_name(_queue_of(app, m))
        build = builders.get((m.task, q))
        if build is None:
            build = builders[(m.task, q)] = app.messages.bulk_builder(m.task, q, now)
        message = build(jid, m.args, m.kwargs)
        message = app.messages.check_job(message[:-1] + b',"workflow":'
                                         + app.serializer.dumps(member_wf) + b"}")
        out.append((Envelope(jid, m.task, list(m.args), dict(m.kwargs), q, enqueued_at=now,
                             workflow=member_wf), message, None))
    return out


def _enqueue_calls(app: WorkflowApp, items: Sequence[tuple[Envelope, bytes, Any]]) -> None:
    """Queue fresh workflow jobs (never unique: see :func:`check_not_unique`), runs of one task
    on one queue in bulk (``enqueue_many``, as ``task.map``)."""
    calls: list[tuple[str, list[str], list[Any]]] = []
    for env, message, _ in items:
        last = calls[-1] if calls else None
        if (last is None or last[2][0] != env.task or last[1][0] != keys.pending(env.queue)
                or len(last[2]) - 2 >= ENQUEUE_CHUNK):
            last = ("enqueue_many", [keys.pending(env.queue), keys.stats(env.queue)],
                    [env.task, repr(env.enqueued_at)])
            calls.append(last)
        last[1].append(keys.job(env.queue, env.id))
        last[2].append(message)
    for q in {env.queue for env, _, _ in items}:
        app.records.register_queue(q)
    for i in range(0, len(calls), 20):
        app.records.scripts.run_many(calls[i:i + 20])


@dataclass(frozen=True)
class Chain:
    steps: tuple[Signature, ...]
    #: A group or chord that ends the chain (its members get the last step's result first).
    ending: Group | Chord | None = None

    def __or__(self, other: Signature | Chain | Group | Chord) -> Chain:
        return chain(self, other)

    def to_dict(self) -> dict[str, Any]:
        tail = [] if self.ending is None else [_group_spec(self.ending)]
        return {"chain": [s.to_dict() for s in self.steps] + tail}

    def delay(self, app: Any = None) -> ChainJob:
        """Queue the first step; each later step is queued by the worker that finished the
        one before (once, even if that worker is lost; see docs/workflows.md)."""
        if not self.steps:
            raise ValueError("a chain needs at least one step")
        a: WorkflowApp = _app_of(self.steps, app)
        for i, sig in enumerate(self.steps):
            _check(a, sig, i > 0)
        cid = new_id()
        rest = [replace(s, queue=_queue_of(a, s)) for s in self.steps[1:]]
        nxt = [s.to_dict() for s in rest]
        records = a.records
        group_id, spec = workflows.step_id(cid, len(self.steps)), None
        if self.ending is not None:
            spec = _ending_spec(a, self.ending)
            nxt.append(spec)
        first = self.steps[0]
        item = _send(a, first, workflows.step_id(cid, 0), first.args,
                     {"kind": "chain", "id": cid, "step": 0, "next": nxt})
        ids = [(item[0].queue, item[0].id)] + [(s.queue or "default", workflows.step_id(cid, i + 1))
                                                for i, s in enumerate(rest)]
        later = [(q, jid, s.task) for (q, jid), s in zip(ids[1:], rest, strict=True)]
        if spec is not None:
            later += workflows.group_records(group_id, spec)
        for q in {q for q, _, _ in later}:
            records.register_queue(q)
        workflows.defer_records(a.client, later)
        _enqueue_calls(a, [item])
        log.info("chain=%s steps=%d enqueued", cid, len(self.steps))
        return ChainJob(records, cid, [Job(records, jid, q) for q, jid in ids],
                        _ending_job(records, group_id, spec))


def _group_spec(ending: Group | Chord) -> dict[str, Any]:
    """A chain's final group as its workflow field carries it."""
    if isinstance(ending, Chord):
        return {"group": [m.to_dict() for m in ending.group.members],
                "then": ending.callback.to_dict(), "on_failure": ending.on_failure}
    return {"group": [m.to_dict() for m in ending.members]}


def _ending_spec(app: WorkflowApp, ending: Group | Chord) -> dict[str, Any]:
    """Check a chain's final group (members take the last step's result first) and resolve
    its queues."""
    members = ending.group.members if isinstance(ending, Chord) else ending.members
    if not members:
        raise ValueError("a group that ends a chain needs at least one member")
    if isinstance(ending, Chord) and app.serializer.name != "json":
        raise ValueError("a chord needs the json serializer (its callback's message is "
                         "completed in Redis)")
    for m in members:
        _check(app, m, True)
    plain = Group(tuple(replace(m, queue=_queue_of(app, m)) for m in members))
    if not isinstance(ending, Chord):
        return _group_spec(plain)
    _check(app, ending.callback, True)
    return _group_spec(Chord(plain, replace(ending.callback,
                                            queue=_queue_of(app, ending.callback)),
                             ending.on_failure))


def _ending_job(records: Records, group_id: str, spec: dict[str, Any] | None) -> GroupJob | None:
    if spec is None:
        return None
    jobs: list[Job[Any]] = [Job(records, jid, q)
                            for q, jid, _ in workflows.group_records(group_id, spec)]
    cb = jobs.pop() if spec.get("then") else None
    state_q = (spec.get("then") or spec["group"][0])["queue"]
    return GroupJob(records, group_id, state_q, jobs, cb)


@dataclass(frozen=True)
class Group:
    members: tuple[Signature, ...]

    def then(self, callback: Signature, on_failure: str = "fail") -> Chord:
        """A chord: ``callback`` runs once, with the list of results, when every member has
        ended. ``on_failure``: "fail" (a failed member fails the callback, which does not
        run), "skip" (it runs with the results of the members that succeeded) or "run" (it
        runs with every member's place: a failed one's holds ``{"status", "error_type",
        "error_message"}``)."""
        if on_failure not in workflows.POLICIES:
            raise ValueError(f"on_failure is one of {workflows.POLICIES}, not {on_failure!r}")
        return Chord(self, _signature(callback), on_failure)

    def to_dict(self) -> dict[str, Any]:
        return {"group": [s.to_dict() for s in self.members]}

    def delay(self, app: Any = None) -> GroupJob:
        return _start_group(_app_of(self.members, app), self.members, None, "fail")


@dataclass(frozen=True)
class Chord:
    group: Group
    callback: Signature
    on_failure: str = "fail"

    def to_dict(self) -> dict[str, Any]:
        return {**self.group.to_dict(), "then": self.callback.to_dict(),
                "on_failure": self.on_failure}

    def delay(self, app: Any = None) -> GroupJob:
        a = _app_of([*self.group.members, self.callback], app)
        return _start_group(a, self.group.members, self.callback, self.on_failure)


def _start_group(app: WorkflowApp, members: Sequence[Signature], callback: Signature | None,
                 policy: str) -> GroupJob:
    """Create the group's state (and callback record), then queue the members."""
    gid = new_id()
    for m in members:
        _check(app, m, False)
    if callback is not None:
        _check(app, callback, True)
    if not members:
        cb = None
        if callback is not None:  # nothing to wait for: the callback gets no results
            cb = app.enqueue(callback.task, [[], *callback.args], callback.kwargs,
                             queue=_queue_of(app, callback), job_id=f"{gid}-callback")
        return GroupJob(app.records, gid, "", [], cb)
    state_q = _queue_of(app, callback if callback is not None else members[0])
    cb_env, template = None, None
    if callback is not None:
        if app.serializer.name != "json":
            raise ValueError("a chord needs the json serializer (its callback's message is "
                             "completed in Redis)")
        cb_env, message, _ = _send(app, callback, f"{gid}-callback",
                                   [workflows.RESULTS_TOKEN, *callback.args], None)
        template = workflows.split_template(message,
                                            app.serializer.dumps(workflows.RESULTS_TOKEN))
    wf: dict[str, Any] = {"kind": "member", "id": gid, "queue": state_q}
    if cb_env is not None:
        wf["callback"] = cb_env.id
    items = _member_items(app, members, gid, wf)
    app.records.register_queue(state_q)
    name, ks, argv = workflows.group_call(state_q, gid, len(items), policy, cb_env, template)
    app.records.scripts.run(name, ks, argv)  # before any member can end
    _enqueue_calls(app, items)
    log.info("group=%s members=%d callback=%s enqueued", gid, len(items),
             cb_env.id if cb_env else "-")
    cb_job: Job[Any] | None = Job(app.records, cb_env.id, state_q) if cb_env is not None else None
    return GroupJob(app.records, gid, state_q,
                    [Job(app.records, env.id, env.queue) for env, _, _ in items], cb_job)


__all__ = ["Chain", "ChainJob", "Chord", "Group", "GroupJob", "Signature", "chain", "group"]
