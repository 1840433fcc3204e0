"""/healthz, /metrics and the dashboard snapshot (rates, running jobs)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from redisq import App
from redisq.worker.prodcons import Worker
from tests.support.inproc import running
from tests.support.wait import wait_until
from webapp import create_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_healthz_needs_redis_and_a_live_worker(client: FlaskClient, rq: App) -> None:
    res = client.get("/healthz")
    assert res.status_code == 503
    assert res.get_json() == {"error": "no live worker", "status": "unhealthy", "redis": True,
                              "workers": 0}
    with running(rq):
        res = wait_until(lambda: (r := client.get("/healthz")).status_code == 200 and r, 3,
                         what="a live worker")
        assert res.get_json() == {"status": "ok", "redis": True, "workers": 1}
    broken = create_app({"REDISQ_APP": App("redis://127.0.0.1:1/0")}).test_client()
    res = broken.get("/healthz")
    assert res.status_code == 503 and res.get_json()["redis"] is False
    assert "Traceback" not in res.get_data(as_text=True)


def test_metrics(client: FlaskClient, rq: App, worker: Worker) -> None:
    ok = client.post("/prodcons", json={"task": "web.add", "args": [1, 2]}).get_json()
    bad = client.post("/prodcons", json={"task": "web.boom"}).get_json()
    rq.job(ok["job_id"]).result(5)
    wait_until(lambda: rq.job(bad["job_id"]).status == "dead", 5, what="the failing job")
    client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "queue": "other"})
    res = client.get("/metrics")
    assert res.status_code == 200 and res.mimetype == "text/plain"
    got = samples(res.get_data(as_text=True))
    q, idle = (("queue", "default"),), (("queue", "other"),)
    assert got[("redisq_queue_depth", idle)] == 1 and got[("redisq_queue_depth", q)] == 0
    assert got[("redisq_queue_in_flight", q)] == 0
    assert got[("redisq_queue_dead_letters", q)] == 1
    assert got[("redisq_jobs_enqueued_total", q)] == 2
    assert got[("redisq_jobs_succeeded_total", q)] == 1
    assert got[("redisq_jobs_dead_total", q)] == 1
    assert got[("redisq_job_duration_seconds_count", q)] == 2
    assert got[("redisq_job_duration_seconds_bucket", (("le", "+Inf"), *q))] == 2
    assert got[("redisq_job_duration_seconds_sum", q)] >= 0
    assert got[("redisq_workers", ())] == 1
    worker_label = (("worker", worker.id),)
    assert got[("redisq_worker_reconnects_total", worker_label)] == 0
    # Per-worker counts arrive with the worker's next heartbeat.
    def per_worker() -> tuple[float, float]:
        got = samples(client.get("/metrics").get_data(as_text=True))
        return (got[("redisq_worker_processed_total", worker_label)],
                got[("redisq_worker_failed_total", worker_label)])

    wait_until(lambda: per_worker() == (1, 1), 3, interval_s=0.1,
               what="the heartbeat's processed and failed counts")


def test_each_app_has_its_own_metrics_registry(flask_app: Flask, rq: App) -> None:
    other = create_app({"REDISQ_APP": rq})
    for app in (flask_app, other, flask_app):
        assert app.test_client().get("/metrics").status_code == 200
    assert (flask_app.extensions["redisq"].metrics_registry
            is not other.extensions["redisq"].metrics_registry)


def test_snapshot_rates_and_running_jobs(client: FlaskClient, rq: App, worker: Worker) -> None:
    client.post("/prodcons", json={"task": "web.add", "args": [0, 0]})
    snap = client.get("/api/snapshot").get_json()
    assert snap["queues"]["default"]["rate"] == 0.0  # no earlier snapshot to measure from
    for i in range(5):  # settled after that first snapshot: the rate counts them
        client.post("/prodcons", json={"task": "web.add", "args": [i, i]})
    wait_until(lambda: client.get("/api/snapshot").get_json()["queues"]["default"]["rate"] > 0,
               3, interval_s=0.1, what="a rate")
    job_id = client.post("/prodcons", json={"task": "web.steps", "args": [1, "gate"]}) \
        .get_json()["job_id"]
    snap = wait_until(lambda: (s := client.get("/api/snapshot").get_json())["running"]
                      and s["running"][0]["progress"] > 0 and s, 3, what="the job's progress")
    assert snap["running"][0]["id"] == job_id and snap["running"][0]["progress"] == 0.5
    assert snap["running"][0]["worker"] == worker.id
    assert snap["workers"][0]["id"] == worker.id
    rq.client.set("gate", 1)
    rq.job(job_id).result(5)
