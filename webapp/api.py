"""Write endpoints and job status: ``/prodcons``, ``/pubsub``, ``/jobs/<id>``, queue actions."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from redisq import DuplicateJob, SerializationError, keys

from . import error, state

api = Blueprint("api", __name__)

_JOB_FIELDS = ("status", "task", "queue", "attempts", "enqueued_at", "started_at", "finished_at",
               "worker", "progress", "progress_message", "error_type", "error_message", "due_at")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@api.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return error(exc.status, str(exc))


def json_body(required: dict[str, type | tuple[type, ...]],
              optional: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """The request's JSON object, checked field by field (415 / 400 with the field named)."""
    if not request.is_json:
        raise BadRequest(415, "Content-Type must be application/json")
    try:
        # Straight json.loads of the (size-capped) body: Flask's get_json adds nothing here.
        body = json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    unknown = set(body) - set(required) - set(optional)
    if unknown:
        raise BadRequest(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    for name in required:
        if name not in body:
            raise BadRequest(400, f"missing field {name!r}")
    for name, kind in {**required, **optional}.items():
        value = body.get(name)
        if value is None and name in optional:
            continue
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise BadRequest(400, f"field {name!r} must be {_kind_name(kind)}")
    return body


def _json(data: dict[str, Any], status: int) -> Response:
    """A JSON response without jsonify's per-call machinery (the write routes are hot)."""
    return Response(json.dumps(data, separators=(",", ":")), status, mimetype="application/json")


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", list: "a list", dict: "an object", int: "a number",
             float: "a number", bool: "a boolean"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _tuple(kind)))


@api.post("/prodcons")
def enqueue() -> Response | tuple[Response, int]:
    """Queue a registered task: ``{task, args?, kwargs?, queue?, delay_s?}`` → 202."""
    body = json_body({"task": str}, {"args": list, "kwargs": dict, "queue": str,
                                     "delay_s": (int, float)})
    rq = state().rq
    if body["task"] not in rq.tasks:
        raise BadRequest(400, f"unknown task {body['task']!r}")
    delay_s = body.get("delay_s")
    if delay_s is not None and delay_s < 0:
        raise BadRequest(400, "field 'delay_s' must be >= 0")
    try:
        keys.check_name(body.get("queue") or "default")
        job = rq.enqueue(body["task"], args=body.get("args") or (), kwargs=body.get("kwargs"),
                         queue=body.get("queue"), delay_s=delay_s)
    except DuplicateJob as exc:
        return jsonify(error="duplicate job", job_id=exc.existing_id), 409
    except (TypeError, ValueError, SerializationError) as exc:
        raise BadRequest(400, f"bad arguments for {body['task']}: {exc}") from None
    return _json({"job_id": job.id, "status_url": f"/jobs/{job.id}",
                  "duplicate": not job.created}, 202)


@api.post("/pubsub")
def publish() -> Response:
    """Broadcast ``{channel, message}`` to every subscriber → 202 ``{receivers}``."""
    body = json_body({"channel": str, "message": (dict, list, str, int, float, bool)}, {})
    try:
        keys.check_name(body["channel"], "channel")
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None
    return _json({"receivers": state().rq.publish(body["channel"], body["message"])}, 202)


@api.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response | tuple[Response, int]:
    job = state().rq.job(job_id)
    if job is None:
        return error(404, f"no job {job_id}")
    info = job.info()
    out: dict[str, Any] = {"id": job_id, **{k: info[k] for k in _JOB_FIELDS if k in info}}
    if "result" in info:
        out["result"] = json.loads(info["result"])
    return jsonify(out)


@api.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response | tuple[Response, int]:
    job = state().rq.job(job_id)
    if job is None:
        return error(404, f"no job {job_id}")
    if not job.cancel():
        return error(409, f"job {job_id} is {job.status}; only queued jobs can be cancelled")
    return jsonify(id=job_id, status="cancelled")


@api.post("/queues/<queue>/requeue")
def requeue(queue: str) -> Response:
    """Bring the queue's dead jobs back."""
    return jsonify(queue=queue, requeued=state().rq.requeue_dead(_queue(queue)))


@api.post("/queues/<queue>/purge")
def purge(queue: str) -> Response:
    """Delete the queue's waiting messages."""
    return jsonify(queue=queue, purged=state().rq.queue(_queue(queue)).purge())


def _queue(name: str) -> str:
    try:
        return keys.check_name(name)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


@api.get("/prodcons")
def prodcons_page() -> str:
    return render_template("prodcons.html", tasks=sorted(state().rq.tasks))


@api.get("/pubsub")
def pubsub_page() -> str:
    return render_template("pubsub.html")


@api.get("/hello")
def hello() -> str:
    """A bare route: the load test's yardstick for what Flask itself costs."""
    return "hello"
