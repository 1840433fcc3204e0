"""Every route and every error status of the web app, through Flask's test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from redisq import App, config, keys
from redisq.worker import Worker
from webapp import create_app


@pytest.fixture
def rq(redis_url: str) -> Iterator[App]:
    app = App(redis_url)

    @app.task(name="web.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="web.boom", retries=0)
    def boom() -> None:
        raise RuntimeError("kaput")

    @app.task(name="web.once", unique_by="key", on_duplicate="raise")
    def once(key: str) -> None: ...

    yield app
    app.close()


@pytest.fixture
def flask_app(rq: App) -> Flask:
    return create_app({"RQ_APP": rq, "web_max_body_bytes": 2048})


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture
def worker(rq: App) -> Iterator[Worker]:
    w = Worker(rq, config.load({"block_timeout_s": 0.3, "lease_s": 1.5}, {}))
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    yield w
    w.stop()
    t.join(5)


def depth(rq: App) -> int:
    return int(rq.client.llen(keys.pending("default")))


def test_enqueue_then_status_until_succeeded(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [2, 3]})
    assert res.status_code == 202
    body = res.get_json()
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    assert rq.job(body["job_id"]).result(5) == 5
    status = client.get(body["status_url"]).get_json()
    assert status["status"] == "succeeded" and status["result"] == 5


def test_failed_job_shows_its_error(client: FlaskClient, rq: App, worker: Worker) -> None:
    job_id = client.post("/prodcons", json={"task": "web.boom"}).get_json()["job_id"]
    with pytest.raises(Exception, match="kaput"):
        rq.job(job_id).result(5)
    status = client.get(f"/jobs/{job_id}").get_json()
    assert status["status"] == "dead" and status["error_type"] == "RuntimeError"
    assert "traceback" not in status  # no stack traces over HTTP


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [
    ("{}", "text/plain", 415, "Content-Type"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ("[1, 2]", "application/json", 400, "JSON object"),
    ("{}", "application/json", 400, "missing field 'task'"),
    ('{"task": 5}', "application/json", 400, "'task' must be a string"),
    ('{"task": "web.add", "args": {"a": 1}}', "application/json", 400, "'args' must be a list"),
    ('{"task": "web.add", "kwargs": []}', "application/json", 400, "'kwargs' must be an object"),
    ('{"task": "web.add", "delay_s": "soon"}', "application/json", 400, "'delay_s' must be"),
    ('{"task": "web.add", "delay_s": -1}', "application/json", 400, ">= 0"),
    ('{"task": "os.system", "args": ["rm"]}', "application/json", 400, "unknown task"),
    ('{"task": "web.add", "args": [1]}', "application/json", 400, "bad arguments"),
    ('{"task": "web.add", "extra": 1}', "application/json", 400, "unknown field"),
    ('{"task": "web.add", "queue": "a b"}', "application/json", 400, "queue name"),
])
def test_bad_input_is_a_clear_4xx_and_enqueues_nothing(
        client: FlaskClient, rq: App, body: str, ctype: str, status: int, message: str) -> None:
    res = client.post("/prodcons", data=body, content_type=ctype)
    assert res.status_code == status, res.get_json()
    assert message in res.get_json()["error"]
    assert depth(rq) == 0


def test_oversized_body_is_413(client: FlaskClient, rq: App) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": ["x" * 5000, 1]})
    assert res.status_code == 413 and "error" in res.get_json()
    assert depth(rq) == 0


def test_duplicate_unique_job_is_409(client: FlaskClient) -> None:
    assert client.post("/prodcons", json={"task": "web.once", "args": ["k"]}).status_code == 202
    res = client.post("/prodcons", json={"task": "web.once", "args": ["k"]})
    assert res.status_code == 409 and res.get_json()["job_id"]


def test_pubsub_publish_and_errors(client: FlaskClient, rq: App) -> None:
    res = client.post("/pubsub", json={"channel": "news", "message": {"kind": "x"}})
    assert res.status_code == 202 and res.get_json() == {"receivers": 0}
    assert client.post("/pubsub", json={"channel": "news"}).status_code == 400
    assert client.post("/pubsub", json={"channel": "a b", "message": 1}).status_code == 400
    assert client.post("/pubsub", data="x", content_type="text/plain").status_code == 415


def test_unknown_job_is_404_json(client: FlaskClient) -> None:
    res = client.get("/jobs/nope")
    assert res.status_code == 404 and res.get_json()["error"] == "no job nope"
    assert client.get("/no/such/page").status_code == 404
    assert client.post("/jobs/nope/cancel").status_code == 404


def test_cancel_requeue_purge(client: FlaskClient, rq: App) -> None:
    job_id = client.post("/prodcons", json={"task": "web.add", "args": [1, 1]}).get_json()["job_id"]
    client.post("/prodcons", json={"task": "web.add", "args": [2, 2]})
    assert client.post(f"/jobs/{job_id}/cancel").get_json()["status"] == "cancelled"
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 409
    assert depth(rq) == 1  # the cancelled job's message left the queue
    assert client.post("/queues/default/purge").get_json()["purged"] == 1
    assert client.post("/queues/default/requeue").get_json()["requeued"] == 0


def test_token_protects_writes(rq: App) -> None:
    client = create_app({"RQ_APP": rq, "web_token": "s3cret"}).test_client()
    body = {"task": "web.add", "args": [1, 2]}
    assert client.post("/prodcons", json=body).status_code == 401
    assert client.post("/prodcons", json=body,
                       headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/prodcons", json=body,
                       headers={"Authorization": "Bearer s3cret"}).status_code == 202
    assert client.get("/healthz").status_code in (200, 503)  # reads stay open


def test_healthz_metrics_pages_and_snapshot(client: FlaskClient, rq: App, worker: Worker) -> None:
    from tests.support.wait import wait_until

    wait_until(lambda: client.get("/healthz").status_code == 200, 3, what="a live worker")
    assert client.get("/healthz").get_json()["workers"] == 1
    client.post("/prodcons", json={"task": "web.add", "args": [1, 2]})
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'redisq_queue_depth{queue="default"}' in metrics
    assert "redisq_job_duration_seconds_bucket" in metrics and "redisq_workers 1.0" in metrics
    for page in ("/", "/prodcons", "/pubsub"):
        res = client.get(page)
        assert res.status_code == 200 and b"<html" in res.data
    snap = client.get("/api/snapshot").get_json()
    assert "default" in snap["queues"] and len(snap["workers"]) == 1


def test_healthz_503_without_workers_or_redis(rq: App, client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 503
    broken = App("redis://127.0.0.1:1/0")
    res = create_app({"RQ_APP": broken}).test_client().get("/healthz")
    assert res.status_code == 503 and res.get_json()["redis"] is False


def test_redis_down_is_503_not_500(rq: App) -> None:
    broken = App("redis://127.0.0.1:1/0")

    @broken.task(name="web.add")
    def add(a: int, b: int) -> int:
        return a + b

    res = create_app({"RQ_APP": broken}).test_client().post(
        "/prodcons", json={"task": "web.add", "args": [1, 2]})
    assert res.status_code == 503 and "Traceback" not in res.get_data(as_text=True)


def test_event_streams(client: FlaskClient, rq: App) -> None:
    res = client.get("/events?max_s=0.5")
    text = res.get_data(as_text=True)
    assert res.mimetype == "text/event-stream" and "event: snapshot" in text
    res = client.get("/events/news?max_s=0.3")
    assert res.status_code == 200 and res.get_data(as_text=True).startswith("retry:")
    assert client.get("/events/a%20b").status_code == 400
