"""Write endpoints and job status: ``/prodcons``, ``/pubsub``, ``/jobs/<id>``, queue actions.

The two write routes are the hot path (the load test): one parse of the body, one Redis round
trip (``App.enqueue`` is one MULTI/EXEC or EVALSHA, ``App.publish`` one PUBLISH), one small
JSON encode.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from flask import Blueprint, Response, request

from redisq import DuplicateJob, SerializationError
from redisq.backend import keys
from redisq.backend.actions import ActionRefused
from redisq.backend.actions import cancel as cancel_job
from redisq.canvas import Chord, Group, Signature, chain, group
from redisq.tasks import check_call_options

from .body import BadRequest, Kind, _json, _name, json_body
from .http import error, page, state, wants_html

api = Blueprint("api", __name__)

MAX_DELAY_S = 366 * 86_400.0  # a typo like 1e12 is a mistake, not a job for the year 33658
_JOB_FIELDS = ("status", "task", "queue", "attempts", "enqueued_at", "started_at", "finished_at",
               "worker", "progress", "progress_message", "error_type", "error_message", "due_at")


@api.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return error(exc.status, str(exc))


@api.post("/prodcons")
def enqueue() -> Response:
    """Queue a registered task: ``{task, args?, kwargs?, queue?, delay_s?, options?}`` → 202
    ``{job_id, status_url}``; 409 when a unique task's job is already queued or running and
    the task says ``on_duplicate="raise"``. ``options``: per-call options (``timeout_s``,
    ``retries``, ``expires_s``, ``result_ttl_s``, ``job_id``, ``headers``, ``queue``). A
    workflow instead (docs/workflows.md): ``{chain: [signature, ...]}`` or ``{group:
    [signature, ...], then?: signature, on_failure?}``, each signature ``{task, args?, kwargs?,
    queue?}`` → 202 with the ids."""
    body = json_body({}, _ENQUEUE_FIELDS)
    if "chain" in body or "group" in body:
        return enqueue_workflow(body)
    if "task" not in body:
        raise BadRequest(400, "missing field 'task' (or 'chain' / 'group')")
    if body["task"] is None:  # (optional only beside a workflow)
        raise BadRequest(400, "field 'task' must be a string")
    st = state()
    queue_app = st.queue_app
    task = body["task"]
    if task not in queue_app.tasks:  # only registered tasks: a name must not pick arbitrary code
        raise BadRequest(400, f"unknown task {task!r}")
    delay_s = body.get("delay_s")
    if delay_s is not None and not 0 <= delay_s <= MAX_DELAY_S:
        raise BadRequest(400, f"field 'delay_s' must be >= 0 and <= {MAX_DELAY_S:g}")
    queue = body.get("queue")
    if queue is not None:
        _check_queue(_name(queue, "queue"))
    options = _options(body.get("options"))
    try:
        job = queue_app.enqueue(task, args=body.get("args") or (), kwargs=body.get("kwargs"),
                                queue=queue, delay_s=delay_s, options=options)
    except DuplicateJob as exc:
        return error(409, "duplicate job", job_id=exc.existing_id)
    except (TypeError, ValueError, SerializationError, RecursionError) as exc:
        raise BadRequest(400, f"bad arguments for {task}: {_short(exc)}") from None
    return _json({"job_id": job.id, "status_url": f"{request.script_root}{st.url_prefix}"
                  f"/jobs/{job.id}", "duplicate": not job.created}, 202)


WORKFLOW_FIELDS: dict[str, Kind] = {"chain": list, "group": list, "then": dict,
                                    "on_failure": str}
_ENQUEUE_FIELDS: dict[str, Kind] = {"task": str, "args": list, "kwargs": dict, "queue": str,
                                    "delay_s": (int, float), "options": dict, **WORKFLOW_FIELDS}
MAX_WORKFLOW_STEPS = 10_000


def enqueue_workflow(body: dict[str, Any]) -> Response:
    """``POST /prodcons`` with a chain or group body (validated as strictly as a task call)."""
    kind = "chain" if "chain" in body else "group"
    extra = set(body) - ({"chain"} if kind == "chain" else {"group", "then", "on_failure"})
    if extra:
        raise BadRequest(400, f"field(s) {sorted(extra)} do not go with {kind!r}")
    items = body[kind]
    if not items and kind == "chain":
        raise BadRequest(400, "field 'chain' must not be empty")
    if len(items) > MAX_WORKFLOW_STEPS:
        raise BadRequest(400, f"field {kind!r} holds at most {MAX_WORKFLOW_STEPS} signatures")
    ending = None
    if kind == "chain" and isinstance(items[-1], dict) and "group" in items[-1]:
        ending, items = _final_group(items[-1], f"chain[{len(items) - 1}]"), items[:-1]
    sigs = [_signature(item, f"{kind}[{i}]") for i, item in enumerate(items)]
    try:
        if kind == "chain":
            c = chain(*sigs, *([ending] if ending is not None else [])).delay()
            return _json({"chain_id": c.id, "job_ids": [s.id for s in c.steps],
                          "group_id": c.ending.id if c.ending else None,
                          "status_url": f"{request.script_root}{state().url_prefix}"
                                        f"/jobs/{c.steps[-1].id}"}, 202)
        wf: Group | Chord = group(sigs)
        if body.get("then") is not None:
            wf = wf.then(_signature(body["then"], "then"), body.get("on_failure") or "fail")
        g = wf.delay(state().queue_app)
    except (TypeError, ValueError, SerializationError, RecursionError) as exc:
        raise BadRequest(400, f"bad {kind}: {_short(exc)}") from None
    return _json({"group_id": g.id, "job_ids": [m.id for m in g.members],
                  "callback_id": g.callback.id if g.callback else None}, 202)


def _final_group(item: dict[str, Any], where: str) -> Group | Chord:
    """A group (with ``then``: a chord) ending a chain body."""
    extra = set(item) - {"group", "then", "on_failure"}
    if extra or not isinstance(item["group"], list) or not item["group"]:
        raise BadRequest(400, f"{where}: a final group is {{group: [signature, ...], then?, "
                              "on_failure?}")
    members = group(_signature(m, f"{where}.group[{i}]") for i, m in enumerate(item["group"]))
    if item.get("then") is None:
        return members
    policy = item.get("on_failure") or "fail"
    if not isinstance(policy, str) or policy not in ("fail", "skip", "run"):
        raise BadRequest(400, f"{where}: on_failure is fail, skip or run")
    return members.then(_signature(item["then"], f"{where}.then"), policy)


def _signature(item: Any, where: str) -> Signature:
    """One signature of a workflow body: a registered task, a declared queue."""
    queue_app = state().queue_app
    try:
        sig = Signature.from_dict(item, queue_app)
    except ValueError as exc:
        raise BadRequest(400, f"{where}: {exc}") from None
    if sig.task not in queue_app.tasks:  # only registered tasks, as for a single job
        raise BadRequest(400, f"{where}: unknown task {sig.task!r}")
    if sig.queue is not None:
        _check_queue(_name(sig.queue, "queue"))
    return sig


@api.post("/pubsub")
def publish() -> Response:
    """Broadcast ``{channel, message}`` to every subscriber → 202 ``{receivers}``."""
    body = json_body({"channel": str, "message": (dict, list, str, int, float, bool)}, {})
    channel = _name(body["channel"], "channel")
    refusal = channel_refusal(channel)
    if refusal is not None:
        return refusal
    try:
        receivers = state().queue_app.publish(channel, body["message"])
    except (TypeError, ValueError, SerializationError, RecursionError) as exc:
        raise BadRequest(400, f"bad message: {_short(exc)}") from None
    return _json({"receivers": receivers}, 202)


def channel_refusal(channel: str) -> Response | None:
    """Why the web app may not touch ``channel`` (a 400/403 response), or None. redisq's own
    channels (``redisq:*``: the dashboards' job events) and Redis's (``__keyspace@0__:...``)
    are never the web's; with ``web_channels`` set, only those."""
    try:
        keys.check_name(channel, "channel")
    except ValueError as exc:
        return error(400, str(exc))
    if channel.startswith((f"{keys.PREFIX}:", "__")):
        return error(403, f"channel {channel!r} is reserved (redisq:* and __* are not the web's)")
    allowed = state().settings.web_channels
    if allowed and channel not in allowed:
        return error(403, f"channel {channel!r} is not one of REDISQ_WEB_CHANNELS")
    return None


def _options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request's per-call options, their names checked (400 naming the first unknown one;
    their values are checked with the call's, as ``App.enqueue`` does)."""
    if not options:
        return None
    try:
        options = check_call_options(options)
    except TypeError as exc:
        raise BadRequest(400, f"field 'options': {exc}") from None
    if options.get("queue") is not None:
        if not isinstance(options["queue"], str):
            raise BadRequest(400, "field 'options': queue must be a string")
        _check_queue(_name(options["queue"], "queue"))
    return options


def _check_queue(queue: str) -> None:
    """Only the queues the App's tasks declare (or ``web_queues``): every accepted name would
    otherwise become a queue that every snapshot and scrape walks for good."""
    st = state()
    allowed = st.settings.web_queues or {t.options.queue for t in st.queue_app.tasks.values()}
    if queue not in allowed:
        raise BadRequest(400, f"queue {queue!r} is not one the app's tasks declare"
                              " (REDISQ_WEB_QUEUES)")


def _short(exc: BaseException) -> str:
    return str(exc)[:300] or type(exc).__name__


@api.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    """Status, progress, result or error of a job; 404 for an unknown id. A browser (``Accept``
    preferring HTML) gets the job page instead (``webapp.jobs``)."""
    if wants_html():
        from .jobs import job_page

        return job_page(job_id)
    job = state().queue_app.job(job_id)
    info = job.info() if job is not None else None
    if not info:
        return error(404, f"no job {job_id}")
    out: dict[str, Any] = {"id": job_id, **{k: info[k] for k in _JOB_FIELDS if k in info}}
    for name in ("attempts", "progress", "enqueued_at", "started_at", "finished_at", "due_at"):
        if name in out:
            out[name] = _number(out[name])
    if info.get("headers"):  # the job's headers (task.options(headers=...)); not JSON: left out
        with contextlib.suppress(ValueError, RecursionError):
            out["headers"] = json.loads(info["headers"])
    if info.get("result"):
        try:
            out["result"] = json.loads(info["result"])
        except (ValueError, RecursionError):
            out["result"] = info["result"]  # not JSON (written by hand?): shown as it is
    return _json(out, 200)


def _number(text: str) -> Any:
    """Record fields are text in Redis; numbers go out as JSON numbers."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@api.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    """Cancel a queued (or delayed) job; 409 when it already started or finished."""
    job = state().queue_app.job(job_id)
    if job is None:
        return error(404, f"no job {job_id}")
    try:  # recorded in the job's history and the cancelled index
        cancel_job(state().queue_app.records, job.queue, job_id)
    except ActionRefused:
        return error(409, f"job {job_id} is {job.status}; only queued jobs can be cancelled")
    return _json({"id": job_id, "status": "cancelled"}, 200)


@api.post("/queues/<queue>/requeue")
def requeue(queue: str) -> Response:
    """Bring the queue's dead jobs back (the dashboard's "retry dead")."""
    return _json({"queue": queue, "requeued": state().queue_app.requeue_dead(_name(queue, "queue"))}, 200)


@api.post("/queues/<queue>/purge")
def purge(queue: str) -> Response:
    """Delete the queue's waiting messages."""
    return _json({"queue": queue, "purged": state().queue_app.queue(_name(queue, "queue")).purge()}, 200)


@api.post("/jobs/<job_id>/abort")
def abort(job_id: str) -> Response:
    """Stop a job: cancelled if waiting, asked to stop if running (it ends ``aborted``); 409
    when it already finished."""
    job = state().queue_app.job(job_id)
    if job is None:
        return error(404, f"no job {job_id}")
    done = job.abort()
    if not done:
        return error(409, f"job {job_id} is {job.status}; it cannot be aborted")
    return _json({"id": job_id, "status": done}, 200)


@api.post("/queues/<queue>/pause")
def pause(queue: str) -> Response:
    """Workers stop taking jobs from the queue (within half a second); nothing is removed."""
    _check_queue(_name(queue, "queue"))
    state().queue_app.pause(queue)
    return _json({"queue": queue, "paused": True}, 200)


@api.post("/queues/<queue>/resume")
def resume(queue: str) -> Response:
    """Workers take jobs from the queue again."""
    _name(queue, "queue")  # (any paused queue may be resumed, declared or not)
    state().queue_app.resume(queue)
    return _json({"queue": queue, "paused": False}, 200)


@api.get("/prodcons")
def prodcons_page() -> Response:
    """The classic demo: a form that enqueues ``demo.add`` and polls its status URL."""
    return page("prodcons.html")


@api.get("/pubsub")
def pubsub_page() -> Response:
    """Publish to a channel and watch its messages arrive (SSE bridge)."""
    return page("pubsub.html")


@api.get("/hello")
def hello() -> str:
    """A bare route: the load test's yardstick for what Flask itself costs."""
    return "hello"
