"""Operations endpoints: ``/healthz`` for load balancers and ``/metrics`` for Prometheus.

The metrics come from Redis on each scrape (``redisq.ops.stats.snapshot``): the truth about queues
and workers lives there, not in whichever web process the scraper happened to reach.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from redisq.backend.records import DURATION_BUCKETS_S
from redisq.backend.registry import Registry
from redisq.ops.stats import snapshot

from .http import WebState, error, state

log = logging.getLogger("redisq.web")

ops = Blueprint("ops", __name__)

_GAUGES = {"depth": "Messages waiting", "in_flight": "Messages reserved by a worker",
           "delayed": "Messages scheduled for later", "dead_letters": "Dead-letter entries",
           "paused": "1 while the queue is paused (workers take nothing from it)"}
_COUNTERS = {"enqueued": "Jobs enqueued", "succeeded": "Job attempts that succeeded",
             "failed": "Job attempts that failed", "retrying": "Failed attempts retried",
             "dead": "Jobs dead-lettered", "expired": "Jobs expired before they started",
             "throttled": "Job starts a rate or concurrency limit sent back to wait",
             "aborted": "Running jobs stopped by job.abort()"}


@ops.get("/healthz")
def healthz() -> Response:
    """200 when Redis answers and at least one worker is alive, else 503 with the reason."""
    client = state().queue_app.client
    try:
        client.ping()
        workers = Registry(client).workers()
    except Exception as exc:  # any failure to reach Redis is "unhealthy", never a 500
        log.warning("healthz: redis unreachable: %s: %s", type(exc).__name__, exc)
        return error(503, "redis unreachable", status="unhealthy", redis=False)
    if not workers:
        return error(503, "no live worker", status="unhealthy", redis=True, workers=0)
    if any(w.get("redis_full") is True for w in workers):  # consuming goes on; enqueues fail
        return jsonify(status="degraded", redis=True, workers=len(workers), redis_full=True)
    return jsonify(status="ok", redis=True, workers=len(workers))


@ops.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, from this app's own registry (never the global one: two apps
    in one process must not register the same collector twice)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(_registry(state())), mimetype=CONTENT_TYPE_LATEST)


def _registry(st: WebState) -> Any:
    with st.lock:
        if st.metrics_registry is None:
            from prometheus_client import CollectorRegistry

            st.metrics_registry = CollectorRegistry(auto_describe=False)
            st.metrics_registry.register(RedisqCollector(st))
        return st.metrics_registry


class RedisqCollector:
    """A custom collector: one ``snapshot`` per scrape, turned into metric families."""

    def __init__(self, web_state: WebState) -> None:
        self.web_state = web_state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap = snapshot(self.web_state.queue_app.client)
        gauges = {n: GaugeMetricFamily(f"redisq_queue_{n}", doc, labels=["queue"])
                  for n, doc in _GAUGES.items()}
        counters = {n: CounterMetricFamily(f"redisq_jobs_{n}", doc, labels=["queue"])
                    for n, doc in _COUNTERS.items()}
        hist = HistogramMetricFamily("redisq_job_duration_seconds", "Job attempt durations",
                                     labels=["queue"])
        for q, counts in snap["queues"].items():
            for n, family in gauges.items():
                family.add_metric([q], counts.get(n, 0))
            for n, family in counters.items():
                family.add_metric([q], counts.get(n, 0))
            hist.add_metric([q], *_buckets(counts.get("durations") or {}))
        workers = GaugeMetricFamily("redisq_workers", "Live workers")
        workers.add_metric([], len(snap["workers"]))
        per_worker = {n: CounterMetricFamily(f"redisq_worker_{n}", doc, labels=["worker"])
                      for n, doc in (("processed", "Jobs processed per worker"),
                                     ("failed", "Job attempts failed per worker"),
                                     ("reconnects", "Redis reconnects per worker"),
                                     ("oom_refusals", "Writes Redis refused at maxmemory"))}
        full = GaugeMetricFamily("redisq_worker_redis_full", "1 while the worker's last "
                                 "heartbeat found Redis at maxmemory", labels=["worker"])
        for w in snap["workers"]:
            for n, family in per_worker.items():
                family.add_metric([w["id"]], w.get(n, 0))
            full.add_metric([w["id"]], 1.0 if w.get("redis_full") is True else 0.0)
        yield from (*gauges.values(), *counters.values(), hist, workers, *per_worker.values(),
                    full, *_memory(snap.get("memory")), *_workflows(snap.get("workflows")))


def _memory(mem: dict[str, Any] | None) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    if not mem:
        return []
    used = GaugeMetricFamily("redisq_redis_used_memory_bytes", "Redis used_memory")
    used.add_metric([], mem["used_bytes"])
    limit = GaugeMetricFamily("redisq_redis_maxmemory_bytes", "Redis maxmemory (0: none)")
    limit.add_metric([], mem["max_bytes"])
    return [used, limit]


def _workflows(wf: dict[str, Any] | None) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    if not wf:
        return []
    groups = GaugeMetricFamily("redisq_workflow_groups_active", "Groups not complete yet")
    groups.add_metric([], wf["groups_active"])
    awaited = GaugeMetricFamily("redisq_workflow_awaited_jobs",
                                "Jobs that deferred jobs wait on (depends_on)")
    awaited.add_metric([], wf["awaited_jobs"])
    return [groups, awaited]


def _buckets(durations: dict[str, float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs from the per-bucket counts redisq keeps, and the sum."""
    buckets, total = [], 0.0
    for bound in DURATION_BUCKETS_S:
        total += durations.get(f"{bound:g}", 0.0)
        buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
    return buckets, durations.get("sum", 0.0)
