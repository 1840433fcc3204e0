"""The dashboard and its live feeds: ``/``, ``/api/snapshot``, ``/events`` (Server-Sent Events
of job and worker events plus a snapshot every second) and ``/events/<channel>`` (an SSE bridge
to a pub/sub channel: the real-time push people install websockets for).

The streams of a process share one Redis subscription (:mod:`webapp.hub`), which survives a
Redis restart (it reconnects and subscribes again by itself), and one snapshot per second. They
are capped (``web_max_streams``; 503 with ``Retry-After`` beyond), end after
``web_stream_max_s`` (the browser's EventSource reconnects) and end when the client goes away:
each one writes at least every ``sse_keepalive_s`` (an SSE comment when there is nothing to
say), and a write to a closed connection ends the generator, whose ``finally`` gives the slot
back.
"""

from __future__ import annotations

import json
import logging
import math
import time
import weakref
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from redisq.backend import keys
from redisq.ops.stats import recent_failures, running_jobs, settled_jobs, snapshot

from .api import channel_refusal
from .http import WebState, error, page, state
from .hub import Listener

log = logging.getLogger("redisq.web")

stream = Blueprint("stream", __name__)

SNAPSHOT_EVERY_S = 1.0
RATE_WINDOW_S = 10.0  # rates are averaged over up to this long
RECENT_FAILURES = 10
MAX_RUNNING = 50
STREAM_RETRY_S = 5  # Retry-After of a 503 when every stream slot is taken
EVENT_TYPES = frozenset({"job", "progress"})  # what /events forwards from redisq:events


def dashboard_snapshot(st: WebState) -> dict[str, Any]:
    """Queues (with rates), workers, recent failures (dead letters), running jobs with their
    progress, and the periodic jobs' next runs."""
    client = st.queue_app.client
    snap = snapshot(client)
    _add_rates(st, snap)
    queues = list(snap["queues"])
    for counts in snap["queues"].values():
        counts.pop("durations", None)
    return {**snap, "failures": recent_failures(client, queues, RECENT_FAILURES),
            "running": running_jobs(client, queues, MAX_RUNNING),
            "scheduled": snap.get("periodic", [])}


STREAM_RETRY_S = 5  # Retry-After of a 503 when every stream slot is taken
EVENT_TYPES = frozenset({"job", "progress"})  # what /events forwards from redisq:events
def _add_rates(st: WebState, snap: dict[str, Any]) -> None:
    """``rate``: jobs settled per second over the last ``RATE_WINDOW_S``, from a history the
    app keeps (so every open dashboard sees the same rate, however many there are)."""
    now = snap["time"]
    settled = {q: settled_jobs(c) for q, c in snap["queues"].items()}
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
    return page("dashboard.html", tasks=sorted(state().queue_app.tasks))


@stream.get("/api/snapshot")
def api_snapshot() -> Response:
    """The dashboard's data as JSON (what ``/events`` sends as ``snapshot`` events)."""
    return jsonify(dashboard_snapshot(state()))


def _sse(event: str, data: str) -> str:
    # A line break inside the data would end the field early: one data line per line.
    return f"event: {event}\ndata: {data.replace(chr(10), chr(10) + 'data: ')}\n\n"


def _until(st: WebState) -> float:
    """Streams end by themselves after ``web_stream_max_s`` (``?max_s=`` may say sooner)."""
    limit_s = st.settings.web_stream_max_s
    try:
        max_s = float(request.args.get("max_s", limit_s))
    except ValueError:
        max_s = limit_s
    max_s = max_s if math.isfinite(max_s) else limit_s
    return time.monotonic() + min(max(max_s, 0.0), limit_s)


def _sse_response(body: Iterator[str], listener: Listener) -> Response:
    response = Response(body, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # A response closed before its body started never runs the generator's finally; one
    # dropped without close() (against WSGI, but test clients do) still frees the slot.
    response.call_on_close(listener.close)
    weakref.finalize(body, listener.close)
    return response


def _listen(st: WebState, channel: str) -> Listener | Response:
    listener = st.hub.open(channel)
    if listener is None:
        log.warning("all %d event streams of this process are taken: 503", st.hub.max_streams)
        return error(503, "too many open event streams, try again later",
                     headers={"Retry-After": str(STREAM_RETRY_S)})
    return listener


@stream.get("/events")
def events() -> Response:
    """Job and progress events as they happen (event ``job`` / ``progress``), a ``snapshot``
    every second, and a ``redis`` event with ``{"ok": false}`` while Redis is unreachable."""
    st = state()
    until = _until(st)
    listener = _listen(st, keys.EVENTS_CHANNEL)
    if isinstance(listener, Response):
        return listener

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            next_snapshot = 0.0
            while (now := time.monotonic()) < until and not listener.overflowed:
                if now >= next_snapshot:
                    yield _snapshot_event(st)
                    next_snapshot = now + SNAPSHOT_EVERY_S
                data = listener.get(max(min(next_snapshot, until) - time.monotonic(), 0.01))
                if data is None:
                    yield ": keepalive\n\n"
                elif (event := _job_event(data)) is not None:
                    yield event
        finally:
            listener.close()  # the client went away (or the stream ended): free the slot

    return _sse_response(generate(), listener)


def _snapshot_event(st: WebState) -> str:
    """The current snapshot as an SSE event, shared by every stream of the process for up to
    half a snapshot period."""
    with st.snapshot_lock:
        cached = st.snapshot_cache
        if cached is not None and time.monotonic() - cached[0] < SNAPSHOT_EVERY_S / 2:
            return cached[1]
        try:
            text = _sse("snapshot", json.dumps(dashboard_snapshot(st), separators=(",", ":")))
        except Exception as exc:  # Redis down or restarting: say so, keep the stream open
            log.warning("dashboard snapshot failed: %s: %s", type(exc).__name__, exc)
            return _sse("redis", json.dumps({"ok": False, "error": type(exc).__name__}))
        st.snapshot_cache = (time.monotonic(), text)
        return text


def _job_event(data: bytes) -> str | None:
    """Forward a ``job`` or ``progress`` event under its type as the SSE event name; anything
    else on the channel (a forged ``snapshot``...) is dropped: the server's own ``snapshot`` and
    ``redis`` events come from the server alone."""
    text = data.decode("utf-8", "replace")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        return None
    kind = event.get("type") if isinstance(event, dict) else None
    return _sse(kind, text) if kind in EVENT_TYPES else None


@stream.get("/events/<channel>")
def channel_events(channel: str) -> Response:
    """An SSE bridge: each message of the pub/sub ``channel`` as a ``message`` event."""

    refusal = channel_refusal(channel)
    if refusal is not None:
        return refusal
    st = state()
    until = _until(st)
    listener = _listen(st, channel)
    if isinstance(listener, Response):
        return listener

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            while (now := time.monotonic()) < until and not listener.overflowed:
                data = listener.get(max(min(st.sse_keepalive_s, until - now), 0.01))
                yield _sse("message", data.decode("utf-8", "replace")) if data is not None \
                    else ": keepalive\n\n"
        finally:
            listener.close()

    return _sse_response(generate(), listener)
