"""Read-only views: the dashboard, its live feed (SSE), a pub/sub bridge, health and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from redisq import keys
from redisq.channel import Subscriber
from redisq.records import DURATION_BUCKETS_S
from redisq.stats import snapshot, with_rates

from . import WebState, error, state

stream = Blueprint("stream", __name__)

SNAPSHOT_EVERY_S = 1.0
RECENT_FAILURES = 10


def dashboard_snapshot(st: WebState) -> dict[str, Any]:
    """Queues (with rates), workers, recent failures, running jobs with their progress."""
    client = st.rq.client
    snap = snapshot(client)
    snap = with_rates(st.last_snapshot, snap)
    st.last_snapshot = snap
    pipe = client.pipeline(transaction=False)
    for q in snap["queues"]:
        pipe.lrange(keys.dead(q), 0, RECENT_FAILURES - 1)
    failures = []
    for q, entries in zip(snap["queues"], pipe.execute(), strict=True):
        for raw in entries:
            entry = json.loads(raw)
            failures.append({"queue": q, **{k: entry.get(k) for k in
                                            ("job_id", "task", "error_type", "reason",
                                             "failed_at")}})
    failures.sort(key=lambda f: f["failed_at"] or 0, reverse=True)
    running = [{**job, "worker": w["id"]} for w in snap["workers"] for job in w.get("current") or []]
    if running:
        pipe = client.pipeline(transaction=False)
        for job in running:
            pipe.hmget(keys.job(job["queue"], job["id"]), "progress", "progress_message")
        for job, (progress, message) in zip(running, pipe.execute(), strict=True):
            job["progress"] = float(progress) if progress else 0.0
            job["progress_message"] = message.decode() if message else ""
    for q in snap["queues"].values():
        q.pop("durations", None)
    return {**snap, "failures": failures[:RECENT_FAILURES], "running": running,
            "scheduled": snap.get("periodic", [])}


@stream.get("/")
def dashboard() -> str:
    return render_template("dashboard.html", tasks=sorted(state().rq.tasks))


@stream.get("/api/snapshot")
def api_snapshot() -> Response:
    return jsonify(dashboard_snapshot(state()))


def _sse(event: str, data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"event: {event}\ndata: {text}\n\n"


def _subscriber(channel: str) -> Subscriber:
    # Short PING deadlines: a stream notices a dead Redis within seconds and reconnects.
    return Subscriber(state().rq.client, channels=[channel], ping_interval_s=2.0,
                      pong_timeout_s=2.0)


def _max_s() -> float:
    """Streams end by themselves after ``?max_s=`` seconds (tests), else after an hour (the
    browser's EventSource reconnects at once), so no stream lives forever."""
    try:
        return min(float(request.args.get("max_s", 3600)), 3600.0)
    except ValueError:
        return 3600.0


@stream.get("/events")
def events() -> Response:
    """Server-Sent Events: job/worker events as they happen, and a snapshot every second."""
    sub, until = _subscriber(keys.EVENTS_CHANNEL), time.monotonic() + _max_s()
    app = state()

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            next_snapshot = 0.0
            while time.monotonic() < until:
                if time.monotonic() >= next_snapshot:
                    yield _sse("snapshot", dashboard_snapshot(app))
                    next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
                msg = sub.get(min(SNAPSHOT_EVERY_S, max(until - time.monotonic(), 0.01)))
                yield _sse("job", msg.data.decode()) if msg else ": keepalive\n\n"
        finally:
            sub.close()  # the client went away (or the stream ended): drop the subscription

    return Response(generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@stream.get("/events/<channel>")
def channel_events(channel: str) -> Response | tuple[Response, int]:
    """An SSE bridge: a browser follows a pub/sub channel without websockets."""
    try:
        keys.check_name(channel, "channel")
    except ValueError as exc:
        return error(400, str(exc))
    sub, until = _subscriber(channel), time.monotonic() + _max_s()

    def generate() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"
            while time.monotonic() < until:
                msg = sub.get(min(5.0, max(until - time.monotonic(), 0.01)))
                yield _sse("message", msg.data.decode()) if msg else ": keepalive\n\n"
        finally:
            sub.close()

    return Response(generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@stream.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when Redis answers and at least one worker is alive, else 503 with the reason."""
    client = state().rq.client
    try:
        client.ping()
        from redisq.registry import Registry

        workers = Registry(client).workers()
    except Exception as exc:  # any failure to reach Redis is "unhealthy", never a 500
        return jsonify(status="unhealthy", redis=False, error=type(exc).__name__), 503
    if not workers:
        return jsonify(status="unhealthy", redis=True, workers=0), 503
    return jsonify(status="ok", redis=True, workers=len(workers)), 200


@stream.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = _metrics_registry()
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _metrics_registry() -> Any:
    st = state()
    if st.metrics_registry is None:
        from prometheus_client import CollectorRegistry

        st.metrics_registry = CollectorRegistry(auto_describe=False)
        st.metrics_registry.register(_Collector(st))
    return st.metrics_registry


class _Collector:
    """Reads a snapshot from Redis on each scrape (the truth lives there, not in this process)."""

    def __init__(self, web_state: WebState) -> None:
        self.web_state = web_state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap = snapshot(self.web_state.rq.client)
        gauges = {n: GaugeMetricFamily(f"redisq_queue_{n}", f"Messages {n.replace('_', ' ')}",
                                       labels=["queue"])
                  for n in ("depth", "in_flight", "delayed", "dead_letters")}
        counters = {n: CounterMetricFamily(f"redisq_jobs_{n}", f"Job attempts {n}",
                                           labels=["queue"])
                    for n in ("succeeded", "retrying", "dead", "failed", "enqueued")}
        hist = HistogramMetricFamily("redisq_job_duration_seconds", "Job attempt durations",
                                     labels=["queue"])
        for q, c in snap["queues"].items():
            for n, g in gauges.items():
                g.add_metric([q], c.get(n, 0))
            for n, m in counters.items():
                m.add_metric([q], c.get(n, 0))
            durations = c.get("durations") or {}
            buckets, total = [], 0.0
            for bound in DURATION_BUCKETS_S:
                total += durations.get(f"{bound:g}", 0.0)
                buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
            hist.add_metric([q], buckets, durations.get("sum", 0.0))
        workers = GaugeMetricFamily("redisq_workers", "Live workers")
        workers.add_metric([], len(snap["workers"]))
        reconnects = CounterMetricFamily("redisq_worker_reconnects", "Reconnects per worker",
                                         labels=["worker"])
        processed = CounterMetricFamily("redisq_worker_processed", "Jobs processed per worker",
                                        labels=["worker"])
        for w in snap["workers"]:
            reconnects.add_metric([w["id"]], w.get("reconnects", 0))
            processed.add_metric([w["id"]], w.get("processed", 0))
        yield from (*gauges.values(), *counters.values(), hist, workers, reconnects, processed)
