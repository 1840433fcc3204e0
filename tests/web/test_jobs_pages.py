"""Issue 16 over HTTP: the job page (HTML for a browser, JSON otherwise), search, the actions
(guarded POSTs, 409 when they do not apply, recorded in the history), bulk actions, the
graphs' series, and the read/write guards on all of them."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from redisq import App
from redisq.worker.prodcons import Worker
from tests.support.wait import wait_until
from webapp import create_app, state

JSON = {"Content-Type": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def post(client: FlaskClient, url: str, body: Any = None) -> Any:
    return client.post(url, json={} if body is None else body)


def test_job_page_html_for_browsers_json_otherwise(client: FlaskClient, rq: App,
                                                   worker: Worker) -> None:
    job = rq.enqueue("web.boom")
    wait_until(lambda: job.status == "dead")
    page = client.get(f"/jobs/{job.id}", headers=BROWSER)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert f'data-job="{job.id}"' in page.get_data(as_text=True)
    plain = client.get(f"/jobs/{job.id}")
    assert plain.mimetype == "application/json" and plain.json["status"] == "dead"
    full = client.get(f"/api/jobs/{job.id[:10]}").json  # an id prefix finds it
    assert full["id"] == job.id and full["attempts"] == 1 and full["args"] == []
    assert "RuntimeError: kaput" in full["traceback"]
    assert full["history"][0]["event"] == "enqueued"
    assert client.get("/api/jobs/ffffffffffff").status_code == 404
    assert client.get("/api/jobs/ab").status_code == 400  # too short a prefix


def test_search_lists_and_bad_parameters(client: FlaskClient, rq: App, worker: Worker) -> None:
    ok = [rq.enqueue("web.add", [i, 1]) for i in range(3)]
    bad = rq.enqueue("web.boom")
    wait_until(lambda: bad.status == "dead" and all(j.status == "succeeded" for j in ok))
    failed = client.get("/api/jobs?status=failed").json
    assert [j["id"] for j in failed["jobs"]] == [bad.id] and failed["next_offset"] is None
    assert client.get("/api/jobs?error=kaput&last=1h").json["jobs"][0]["id"] == bad.id
    page = client.get("/api/jobs?status=succeeded&task=web.add&limit=2").json
    assert len(page["jobs"]) == 2 and page["next_offset"] == 2
    later = rq.enqueue("web.add", [1, 1], delay_s=60)
    assert client.get("/api/jobs?status=scheduled").json["jobs"][0]["id"] == later.id
    for bad_query in ("status=nope", "limit=0", "limit=x", "since=nan", "last=soon",
                      "queue=a%20b"):
        res = client.get("/api/jobs?" + bad_query)
        assert res.status_code == 400 and "error" in res.json, bad_query
    assert client.get("/jobs", headers=BROWSER).status_code == 200


def test_actions_retry_copy_cancel_delete_and_bulk(client: FlaskClient, rq: App,
                                                   worker: Worker) -> None:
    bad = rq.enqueue("web.boom")
    wait_until(lambda: bad.status == "dead")
    assert post(client, f"/jobs/{bad.id}/retry").json == {"id": bad.id, "status": "queued"}
    wait_until(lambda: bad.status == "dead" and "retry" in str(bad.info().get("history")))
    done = rq.enqueue("web.add", [2, 3])
    assert done.result(5) == 5
    assert post(client, f"/jobs/{done.id}/retry").status_code == 409  # succeeded
    copy = post(client, f"/jobs/{bad.id}/copy").json
    assert copy["job_id"] != bad.id and rq.job(copy["job_id"]).info()["task"] == "web.boom"
    later = rq.enqueue("web.add", [1, 1], delay_s=60)
    assert post(client, f"/jobs/{later.id}/cancel").status_code == 200
    assert "cancel" in [e["event"] for e in client.get(f"/api/jobs/{later.id}").json["history"]]
    wait_until(lambda: rq.job(copy["job_id"]).status == "dead")
    res = post(client, "/jobs/bulk", {"action": "delete",
                                      "jobs": [later.id, copy["job_id"], "f" * 32]})
    assert res.json["done"] == 2 and list(res.json["refused"]) == ["f" * 32]
    assert rq.job(later.id) is None and rq.job(copy["job_id"]) is None
    assert post(client, "/jobs/bulk", {"action": "explode", "jobs": []}).status_code == 400
    assert post(client, "/jobs/bulk", {"action": "retry", "jobs": [1]}).status_code == 400


def test_series_for_the_graphs(client: FlaskClient, rq: App, worker: Worker) -> None:
    jobs = [rq.enqueue("web.add", [i, i]) for i in range(4)]
    wait_until(lambda: all(j.status == "succeeded" for j in jobs))
    data = client.get("/api/series").json
    assert "default" in data["queues"] and sum(data["processed"]) == 4
    assert len(data["processed"]) == 3600 and len(data["latency_p95"]) == 60
    assert sum(client.get("/api/series?queue=other").json["processed"]) == 0


def test_actions_are_guarded_and_reads_need_the_token(rq: App) -> None:
    token = "t" * 20
    app: Flask = create_app({"REDISQ_APP": rq, "web_token": token, "TESTING": True})
    try:
        client = app.test_client()
        job = rq.enqueue("web.add", [1, 2], delay_s=60)
        assert client.get(f"/api/jobs/{job.id}").status_code == 401
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/series").status_code == 401
        assert client.get(f"/jobs/{job.id}").status_code == 401  # JSON: a read
        assert client.get(f"/jobs/{job.id}", headers=BROWSER).status_code == 200  # the shell
        assert client.post(f"/jobs/{job.id}/delete", json={}).status_code == 401
        cross = client.post(f"/jobs/{job.id}/delete", json={}, headers={
            "Authorization": f"Bearer {token}", "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        form = client.post(f"/jobs/{job.id}/delete", data="x", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
        assert form.status_code == 415
        auth = {"Authorization": f"Bearer {token}"}
        assert client.post(f"/jobs/{job.id}/delete", json={}, headers=auth).status_code == 200
        assert rq.job(job.id) is None
    finally:
        state(app).hub.close()


def test_job_pages_and_actions_under_a_mount_prefix(rq: App, tmp_path: Any,
                                                     worker: Worker) -> None:
    from tests.web.test_flask_extension import make_host

    site = make_host(rq, tmp_path)
    try:
        host = site.test_client()
        job = rq.enqueue("web.boom")
        wait_until(lambda: job.status == "dead")
        page = host.get(f"/queue/jobs/{job.id}", headers=BROWSER).get_data(as_text=True)
        assert 'data-root="/queue/"' in page and "/queue/static/jobs.js" in page
        assert 'href="/queue/jobs"' in page  # the nav's link to the lists
        assert host.get("/queue/jobs", headers=BROWSER).status_code == 200
        assert host.get("/queue/api/jobs?status=failed").json["jobs"][0]["id"] == job.id
        copy = host.post(f"/queue/jobs/{job.id}/copy", json={}).json
        assert copy["status_url"] == f"/queue/jobs/{copy['job_id']}"
        assert host.get("/jobs").status_code == 404  # the host's own 404: not ours at its root
    finally:
        state(site).hub.close()
