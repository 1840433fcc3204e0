"""The control endpoints (ctl): pause/resume a queue and abort a job, through the same guards
as every other POST (webapp/security.py)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from redisq import App
from tests.web.test_security import EVIL, WRITE, app_with

ROUTES = ["/queues/default/pause", "/queues/default/resume", "/jobs/x/abort"]


def test_pause_and_resume(client: FlaskClient, rq: App) -> None:
    res = client.post("/queues/default/pause", json={})
    assert res.status_code == 200 and res.get_json() == {"queue": "default", "paused": True}
    assert rq.paused() == {"default"}
    snap = client.get("/api/snapshot").get_json()
    assert snap["paused"] == ["default"]
    assert client.post("/queues/default/resume", json={}).get_json()["paused"] is False
    assert rq.paused() == set()
    assert client.post("/queues/undeclared/pause", json={}).status_code == 400
    assert client.post("/queues/a%20b/resume", json={}).status_code == 400


def test_abort(client: FlaskClient, rq: App) -> None:
    job = rq.enqueue("web.add", [1, 2])
    res = client.post(f"/jobs/{job.id}/abort", json={})
    assert res.status_code == 200 and res.get_json()["status"] == "cancelled"
    assert client.post(f"/jobs/{job.id}/abort", json={}).status_code == 409
    assert client.post("/jobs/nope/abort", json={}).status_code == 404


@pytest.mark.parametrize("route", ROUTES)
def test_control_posts_keep_the_guards(rq: App, route: str) -> None:
    client = app_with(rq, web_token=WRITE).test_client()
    assert client.post(route, json={}).status_code == 401  # no token
    auth = {"Authorization": f"Bearer {WRITE}"}
    assert client.post(route, json={}, headers={**auth, "Origin": EVIL}).status_code == 403
    assert client.post(route, data="x", content_type="text/plain",
                       headers=auth).status_code == 415
    assert rq.paused() == set()
