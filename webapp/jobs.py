"""Find a job, see why it failed, act on it: ``/jobs`` (lists and search), ``/jobs/<id>`` (the
job page, HTML for a browser; ``api.job_status`` answers JSON), ``/api/jobs``,
``/api/jobs/<id>``, ``/api/series`` (the graphs' data) and the actions: ``POST
/jobs/<id>/retry|delete|copy`` and ``POST /jobs/bulk``. Every POST passes the write guards of
:mod:`webapp.security` (same origin, JSON body, the token); every action is recorded in the
job's history (:mod:`redisq.backend.actions`).
"""

from __future__ import annotations

import json
import math
import time

from flask import Blueprint, Response, jsonify, request

from redisq.backend import actions, jobindex
from redisq.model import STATUSES
from redisq.ops import jobs
from redisq.ops.stats import running_jobs

from .body import BadRequest, _name, json_body
from .http import error, page, state

jobs_bp = Blueprint("jobs", __name__)

LISTS = ("queued", "running", "scheduled", "retrying", "failed", "succeeded", "cancelled")
BULK_MAX = 500
SERIES_QUEUES_MAX = 20  #: queues summed into the graphs when none is chosen


@jobs_bp.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return error(exc.status, str(exc))


@jobs_bp.errorhandler(actions.ActionRefused)
def _refused(exc: actions.ActionRefused) -> Response:
    return error(409, str(exc))


@jobs_bp.get("/jobs")
def list_page() -> Response:
    """The lists: queued, running, scheduled, retrying, failed, succeeded, cancelled (a shell
    that fills itself from ``/api/jobs``)."""
    return page("jobs.html", lists=LISTS, statuses=sorted(set(STATUSES) | {"scheduled"}),
                queues=state().queue_app.queues()[:1000])


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(400, f"parameter {name!r} must be a number (unix seconds)")
    return value


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(400, f"parameter {name!r} must be an integer from {low} to {high}")
    return int(raw)


@jobs_bp.get("/api/jobs")
def api_jobs() -> Response:
    """Search: ``status``, ``queue``, ``task``, ``q`` (id prefix), ``error`` (substring),
    ``since``/``until`` (unix s) or ``last`` (``1h``...), ``limit``, ``offset`` →
    ``{jobs, next_offset, truncated}``; ``status=queued|scheduled|running`` list those."""
    args = request.args
    status = args.get("status") or None
    queue = _name(args["queue"], "queue") if args.get("queue") else None
    limit = _int_arg("limit", 50, 1, jobs.PAGE_MAX)
    offset = _int_arg("offset", 0, 0, 1_000_000)
    if status is not None and status not in (*STATUSES, "scheduled"):
        raise BadRequest(400, f"unknown status {status!r}")
    queue_app = state().queue_app
    queues = [queue] if queue else queue_app.queues()
    task = args.get("task") or None
    if status in ("queued", "scheduled"):
        rows = [r for q in queues for r in jobs.waiting(queue_app, q, status, offset, limit)
                if not task or r["task"] == task]
        return jsonify(jobs=rows[:limit], next_offset=offset + limit if len(rows) >= limit
                       else None, truncated=False)
    if status == "started":
        rows = [r for r in running_jobs(queue_app.client, queues, offset + limit)
                if not task or r["task"] == task]
        return jsonify(jobs=rows[offset:], next_offset=None, truncated=False)
    since = _float_arg("since")
    if args.get("last"):
        try:
            since = time.time() - jobs.parse_since(args["last"])
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from None
    query = jobs.Query(status=status, queue=queue, task=task, id_prefix=args.get("q") or None,
                       error=args.get("error") or None, since=since, until=_float_arg("until"),
                       limit=limit, offset=offset)
    return jsonify(jobs.search(queue_app, query))


def _locate(ident: str) -> tuple[str, str]:
    """(queue, job id) of an id or id prefix; 404 / 400 as JSON errors."""
    try:
        found = jobs.resolve(state().queue_app, ident)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None
    if found is None:
        raise BadRequest(404, f"no job {ident}")
    return found


@jobs_bp.get("/api/jobs/<ident>")
def api_job(ident: str) -> Response:
    """Everything the job page shows (record, arguments, traceback, history...)."""
    queue, job_id = _locate(ident)
    shown = jobs.detail(state().queue_app, queue, job_id)
    if not shown:
        return error(404, f"no job {ident}")
    return jsonify(shown)


def job_page(ident: str) -> Response:
    """The job page (a shell: it reads ``/api/jobs/<id>``, as the dashboard reads its data)."""
    return page("job.html", job_id=ident)


@jobs_bp.post("/jobs/<ident>/retry")
def retry(ident: str) -> Response:
    """Run a failed, dead, retrying or cancelled job again now (409 otherwise)."""
    queue, job_id = _locate(ident)
    json_body({}, {})
    actions.retry_now(state().queue_app.records, queue, job_id)
    return jsonify(id=job_id, status="queued")


@jobs_bp.post("/jobs/<ident>/delete")
def delete(ident: str) -> Response:
    """Delete a job that is not running (409 while it runs)."""
    queue, job_id = _locate(ident)
    json_body({}, {})
    actions.delete(state().queue_app.records, queue, job_id)
    return jsonify(id=job_id, deleted=True)


@jobs_bp.post("/jobs/<ident>/copy")
def copy(ident: str) -> Response:
    """Enqueue a new job with the same task and arguments → ``{job_id}`` (409 when only a
    summary of the arguments was kept)."""
    queue, job_id = _locate(ident)
    json_body({}, {})
    queue_app = state().queue_app
    shown = jobs.detail(queue_app, queue, job_id)
    if not shown.get("arguments_complete"):
        return error(409, f"job {job_id}'s arguments were not kept whole (args_summary_bytes)")
    if shown.get("task") not in queue_app.tasks:
        return error(409, f"task {shown.get('task')!r} is not one this web app's App registers")
    new = queue_app.enqueue(shown["task"], args=shown.get("args") or (),
                            kwargs=shown.get("kwargs") or None, queue=queue)
    records = queue_app.records
    actions.append_history(records, queue, job_id, actions.history_line(
        "copied", shown.get("status", ""), to=new.id))
    actions.append_history(records, queue, new.id, actions.history_line(
        "copy of", "", of=job_id))
    return jsonify(job_id=new.id,
                   status_url=f"{request.script_root}{state().url_prefix}/jobs/{new.id}")


@jobs_bp.post("/jobs/bulk")
def bulk() -> Response:
    """``{"action": "retry"|"delete", "jobs": [id, ...]}`` → ``{done, refused: {id: why}}``."""
    body = json_body({"action": str, "jobs": list}, {})
    if body["action"] not in ("retry", "delete"):
        raise BadRequest(400, "field 'action' must be 'retry' or 'delete'")
    ids = body["jobs"]
    if len(ids) > BULK_MAX or not all(isinstance(i, str) and i for i in ids):
        raise BadRequest(400, f"field 'jobs' must be at most {BULK_MAX} job ids")
    records = state().queue_app.records
    act = actions.retry_now if body["action"] == "retry" else actions.delete
    done, refused = 0, {}
    for job_id in ids:
        queue = records.find_queue(job_id)
        try:
            if queue is None:
                raise actions.ActionRefused(f"no job {job_id}")
            act(records, queue, job_id)
            done += 1
        except actions.ActionRefused as exc:
            refused[job_id] = str(exc)
    return jsonify(done=done, refused=refused)


@jobs_bp.get("/api/series")
def api_series() -> Response:
    """The graphs' data for ``queue`` (default: the first 20 known queues, summed): per second
    processed and failed over the last hour, per minute depth and latency p50/p95."""
    queue_app = state().queue_app
    queue = request.args.get("queue")
    queues = [_name(queue, "queue")] if queue else queue_app.queues()[:SERIES_QUEUES_MAX]
    data = jobindex.read_series(queue_app.client, queues, time.time())
    return Response(json.dumps({"queues": queues, **data}, separators=(",", ":")),
                    content_type="application/json")
