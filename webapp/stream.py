"""The dashboard and its live feeds: ``/``, ``/api/snapshot``, ``/events`` (Server-Sent Events
of job and worker events plus a snapshot every second) and ``/events/<channel>`` (an SSE bridge
to a pub/sub channel: the real-time push people install websockets for).

Streams survive a Redis restart (:class:`redisq.channel.Subscriber` reconnects and subscribes
again by itself) and end when the client goes away: each one writes at least every
``sse_keepalive_s`` (an SSE comment when there is nothing to say), and a write to a closed
connection ends the generator, whose ``finally`` drops the subscription.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from redisq import keys
from redisq.channel import Subscriber
from redisq.stats import snapshot

from . import WebState, error, page, state

log = logging.getLogger("redisq.web")

stream = Blueprint("stream", __name__)

SNAPSHOT_EVERY_S = 1.0
RATE_WINDOW_S = 10.0  # rates are averaged over up to this long
RECENT_FAILURES = 10
MAX_RUNNING = 50
_FAILURE_FIELDS = ("job_id", "task", "error_type", "reason", "failed_at")
_RUNNING_FIELDS = ("status", "worker", "started_at", "progress", "progress_message")
MAX_STREAM_S = 3600.0  # then the browser's EventSource reconnects (nothing lives forever)
_SETTLED = ("succeeded", "failed", "dead", "acked")


def dashboard_snapshot(st: WebState) -> dict[str, Any]:
    """Queues (with rates), workers, recent failures (dead letters), running jobs with their
    progress, and the periodic jobs' next runs."""
    client = st.rq.client
    snap = snapshot(client)
    _add_rates(st, snap)
    queues = list(snap["queues"])
    for counts in snap["queues"].values():
        counts.pop("durations", None)
    return {**snap, "failures": _failures(client, queues), "running": _running(client, queues),
            "scheduled": snap.get("periodic", [])}


def _failures(client: Any, queues: list[str]) -> list[dict[str, Any]]:
    if not queues:
        return []
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.lrange(keys.dead(q), 0, RECENT_FAILURES - 1)
    failures = []
    for q, entries in zip(queues, pipe.execute(), strict=True):
        for raw in entries:
            entry = json.loads(raw)
            failures.append({"queue": q, **{k: entry.get(k) for k in _FAILURE_FIELDS}})
    failures.sort(key=lambda f: f["failed_at"] or 0, reverse=True)
    return failures[:RECENT_FAILURES]


def _running(client: Any, queues: list[str]) -> list[dict[str, Any]]:
    """The started jobs, read from the queues' in-flight lists and the job records: live,
    where the workers' registry entries are only as fresh as their last heartbeat."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.smembers(keys.consumers(q))
    lists = [(q, m.decode()) for q, members in zip(queues, pipe.execute() if queues else [],
                                                   strict=True) for m in members]
    for q, member in lists:
        pipe.lrange(keys.processing(q, member), 0, MAX_RUNNING - 1)
    jobs = []
    for (q, _), messages in zip(lists, pipe.execute() if lists else [], strict=True):
        for raw in messages:
            try:
                message = json.loads(raw)
                jobs.append({"id": str(message["id"]), "task": str(message["task"]), "queue": q})
            except (ValueError, KeyError, TypeError):
                continue  # a malformed message: the worker dead-letters it
    for job in jobs:
        pipe.hmget(keys.job(job["queue"], job["id"]), *_RUNNING_FIELDS)
    running = []
    for job, values in zip(jobs, pipe.execute() if jobs else [], strict=True):
        record = {k: v.decode("utf-8", "replace") if v is not None else None
                  for k, v in zip(_RUNNING_FIELDS, values, strict=True)}
        if record["status"] != "started":
            continue  # reserved, not yet started
        running.append({**job, "worker": record["worker"] or "",
                        "started_at": float(record["started_at"] or 0),
                        "progress": float(record["progress"] or 0),
                        "progress_message": record["progress_message"] or ""})
    return sorted(running, key=lambda j: j["started_at"])[:MAX_RUNNING]


def _add_rates(st: WebState, snap: dict[str, Any]) -> None:
    """``rate``: jobs settled per second over the last ``RATE_WINDOW_S``, from a history the
    app keeps (so every open dashboard sees the same rate, however many there are)."""
    now = snap["time"]
    settled = {q: sum(int(c.get(k, 0)) for k in _SETTLED) for q, c in snap["queues"].items()}
    with st.lock:
        history = st.rate_history
        if not history or now - history[-1][0] >= SNAPSHOT_EVERY_S:
            history.append((now, settled))
        while len(history) > 1 and now - history[1][0] >= RATE_WINDOW_S:
            history.popleft()
        since, before = history[0]
    span = now - since
    for q, counts in snap["queues"].items():
        done = settled[q] - before.get(q, settled[q])
        counts["rate"] = round(done / span, 2) if span >= SNAPSHOT_EVERY_S / 2 else 0.0


@stream.get("/")
def dashboard() -> Response:
    """The dashboard; it fills itself from ``/events``."""
    return page("dashboard.html", tasks=sorted(state().rq.tasks))


@stream.get("/api/snapshot")
def api_snapshot() -> Response:
    """The dashboard's data as JSON (what ``/events`` sends as ``snapshot`` events)."""
    return jsonify(dashboard_snapshot(state()))


def _sse(event: str, data: str) -> str:
    # A line break inside the data would end the field early: one data line per line.
    return f"event: {event}\ndata: {data.replace(chr(10), chr(10) + 'data: ')}\n\n"


def _until() -> float:
    """Streams end by themselves after ``?max_s=`` seconds (tests), at most an hour."""
    try:
        max_s = float(request.args.get("max_s", MAX_STREAM_S))
    except ValueError:
        max_s = MAX_STREAM_S
    return time.monotonic() + min(max(max_s, 0.0), MAX_STREAM_S)


def _sse_response(body: Iterator[str]) -> Response:
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _subscriber(st: WebState, channel: str) -> Subscriber:
    # PING deadlines below the keepalive: a stream notices a dead Redis within seconds and
    # reconnects (with backoff, capped at 2 s) instead of waiting on a dead socket.
    return Subscriber(st.rq.client, channels=[channel], ping_interval_s=2.0, pong_timeout_s=2.0)


@stream.get("/events")
def events() -> Response:
    """Job and progress events as they happen (event ``job`` / ``progress``), a ``snapshot``
    every second, and a ``redis`` event with ``{"ok": false}`` while Redis is unreachable."""
    st, until = state(), _until()
    sub = _subscriber(st, keys.EVENTS_CHANNEL)

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            next_snapshot = 0.0
            while (now := time.monotonic()) < until:
                if now >= next_snapshot:
                    yield _snapshot_event(st)
                    next_snapshot = now + SNAPSHOT_EVERY_S
                msg = sub.get(max(min(next_snapshot, until) - time.monotonic(), 0.01))
                yield _job_event(msg.data) if msg else ": keepalive\n\n"
        finally:
            sub.close()  # the client went away (or the stream ended): drop the subscription

    return _sse_response(generate())


def _snapshot_event(st: WebState) -> str:
    try:
        return _sse("snapshot", json.dumps(dashboard_snapshot(st), separators=(",", ":")))
    except Exception as exc:  # Redis down or restarting: say so, keep the stream open
        log.warning("dashboard snapshot failed: %s: %s", type(exc).__name__, exc)
        return _sse("redis", json.dumps({"ok": False, "error": type(exc).__name__}))


def _job_event(data: bytes) -> str:
    """Forward an event under its own ``type`` (``job``, ``progress``...) as the SSE event name,
    so the page listens for each kind separately."""
    text = data.decode("utf-8", "replace")
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        kind = None
    return _sse(kind if isinstance(kind, str) and kind.isalnum() else "job", text)


@stream.get("/events/<channel>")
def channel_events(channel: str) -> Response:
    """An SSE bridge: each message of the pub/sub ``channel`` as a ``message`` event."""
    try:
        keys.check_name(channel, "channel")
    except ValueError as exc:
        return error(400, str(exc))
    st, until = state(), _until()
    sub = _subscriber(st, channel)

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            while (now := time.monotonic()) < until:
                msg = sub.get(max(min(st.sse_keepalive_s, until - now), 0.01))
                yield _sse("message", msg.data.decode("utf-8", "replace")) if msg \
                    else ": keepalive\n\n"
        finally:
            sub.close()

    return _sse_response(generate())
