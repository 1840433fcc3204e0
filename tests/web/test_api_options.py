"""POST /prodcons with per-call ``options``: applied to the job (headers on its record, its own
retries), and a clear 400 naming the problem for unknown or bad options (nothing queued)."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from redisq import App
from redisq.worker.prodcons import Worker
from tests.support.inproc import running
from tests.support.wait import wait_until
from tests.web.test_ops import samples


def test_options_reach_the_job(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [2, 3], "options": {
        "headers": {"request_id": "req-9"}, "job_id": "web-order-1", "result_ttl_s": 60,
        "expires_s": 30, "queue": "default"}})
    assert res.status_code == 202, res.get_json()
    assert res.get_json()["job_id"] == "web-order-1"
    job = rq.job("web-order-1")
    assert job is not None and job.result(5) == 5 and job.headers == {"request_id": "req-9"}
    shown = client.get("/jobs/web-order-1").get_json()
    assert shown["headers"] == {"request_id": "req-9"} and shown["status"] == "succeeded"
    again = client.post("/prodcons", json={"task": "web.boom", "options": {"retries": 0}})
    assert again.status_code == 202


@pytest.mark.parametrize(("options", "why"), [
    ({"priority": 9}, "unknown job option 'priority'"),
    ({"retries": -1}, "'retries' must be >= 0"),
    ({"timeout_s": "soon"}, "'timeout_s' must be"),
    ({"expires_s": 0}, "'expires_s' must be a number > 0"),
    ({"result_ttl_s": True}, "'result_ttl_s' must be int or float"),
    ({"headers": ["not", "an", "object"]}, "headers must be a dict"),
    ({"queue": "nowhere"}, "queue 'nowhere' is not one the app's tasks declare"),
    ({"job_id": "has space"}, "job id name"),
])
def test_bad_options_are_400_and_queue_nothing(client: FlaskClient, rq: App, options: dict,
                                                why: str) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "options": options})
    assert res.status_code == 400 and why in res.get_json()["error"], res.get_json()
    assert rq.queue("default").depth() == 0


def test_options_must_be_an_object(client: FlaskClient) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "options": [1]})
    assert res.status_code == 400 and "'options' must be an object" in res.get_json()["error"]


def test_an_expired_job_is_counted_in_metrics(client: FlaskClient, rq: App) -> None:
    job = rq.job(client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "options": {
        "expires_s": 0.01}}).get_json()["job_id"])
    assert job is not None
    deadline = time.time() + 0.01
    wait_until(lambda: time.time() > deadline + 0.05, what="the deadline to pass")
    with running(rq):
        wait_until(lambda: job.status == "expired", what="the expiry")
    got = samples(client.get("/metrics").get_data(as_text=True))
    assert got[("redisq_jobs_expired_total", (("queue", "default"),))] == 1
    assert client.get(f"/jobs/{job.id}").get_json()["status"] == "expired"
