"""``webapp.Redisq``: redisq's dashboard and API mounted under /queue in a host Flask app with
routes, templates and error handlers of its own (Flask's test client, a real Redis): the pages
and their static files, the API and the SSE stream resolve under the prefix, the Host/Origin/
token/CSRF checks guard redisq's routes, and the host's routes stay the host's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from redisq import App, ConfigError
from redisq.backend import keys
from redisq.worker.prodcons import Worker
from tests.support.wait import wait_until
from webapp import Redisq, state

EVIL = "https://evil.example"
TOKEN = "write-token-0123456789"


def make_host(rq: App, tmp_path: Path, **config: object) -> Flask:
    """A host app with a page, a form-posting route, its own base.html and its own 404."""
    (tmp_path / "base.html").write_text("HOST BASE {% block main %}{% endblock %}")
    site = Flask("host_site", template_folder=str(tmp_path))
    site.config["TESTING"] = True

    @site.get("/")
    def home() -> str:
        return "host home"

    @site.post("/orders")
    def orders() -> dict[str, object]:
        return {"ok": True, "size": len(request.get_data())}

    @site.errorhandler(404)
    def not_found(exc: Exception) -> tuple[str, int]:
        return "host 404", 404

    Redisq(site, rq, url_prefix="/queue", config={"REDISQ_SSE_KEEPALIVE_S": 0.2,
                                                   "web_max_body_bytes": 2048, **config})
    return site


@pytest.fixture
def site(rq: App, tmp_path: Path) -> Iterator[Flask]:
    app = make_host(rq, tmp_path)
    yield app
    state(app).hub.close()


@pytest.fixture
def host(site: Flask) -> FlaskClient:
    return site.test_client()


def test_dashboard_and_its_static_files_resolve_under_the_prefix(host: FlaskClient) -> None:
    res = host.get("/queue/")
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "Content-Security-Policy" in res.headers
    assert 'src="/queue/static/app.js"' in html and 'href="/queue/static/style.css"' in html
    assert 'data-root="/queue/"' in html and 'href="/queue/prodcons"' in html
    assert "HOST BASE" not in html  # our pages extend our base.html, not the host's
    assert "web.add" in html  # the task list of the App it was given
    js = host.get("/queue/static/app.js")
    assert js.status_code == 200 and b"const ROOT" in js.data
    assert host.get("/queue/prodcons").status_code == 200


def test_api_enqueue_through_the_guards_and_the_job_runs(host: FlaskClient, rq: App,
                                                          worker: Worker) -> None:
    res = host.post("/queue/prodcons", json={"task": "web.add", "args": [2, 3]},
                    headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert res.status_code == 202, res.get_json()
    body = res.get_json()
    assert body["status_url"] == f"/queue/jobs/{body['job_id']}"
    done = wait_until(lambda: (j := host.get(body["status_url"]).get_json())
                      .get("status") == "succeeded" and j, what="the job's status")
    assert done["result"] == 5


def test_cross_site_and_form_posts_are_refused(host: FlaskClient, rq: App) -> None:
    res = host.post("/queue/prodcons", json={"task": "web.add", "args": [1, 2]},
                    headers={"Origin": EVIL})
    assert res.status_code == 403 and "cross-site" in res.get_json()["error"]
    res = host.post("/queue/prodcons", data={"task": "web.add"},
                    headers={"Sec-Fetch-Site": "cross-site"})
    assert res.status_code == 403
    res = host.post("/queue/queues/default/purge", data="x", content_type="text/plain")
    assert res.status_code == 415
    assert rq.client.llen(keys.pending("default")) == 0


def test_the_hosts_routes_are_untouched(host: FlaskClient) -> None:
    # A cross-site form post and a foreign Host are the host's own business on its routes...
    res = host.post("/orders", data={"x": "1" * 5000}, headers={"Origin": EVIL})
    assert res.status_code == 200 and res.get_json()["ok"] is True  # (over our body limit)
    assert host.get("/", headers={"Host": "shop.example"}).data == b"host home"
    assert host.get("/nowhere").data == b"host 404"
    assert "redisq_session" not in str(host.get("/").headers)
    # ...and refused on redisq's.
    res = host.get("/queue/", headers={"Host": "shop.example"})
    assert res.status_code == 400 and "Host" in res.get_json()["error"]
    assert host.get("/queue/healthz", headers={"Host": "shop.example"}).status_code in (200, 503)


def test_redisq_errors_are_json_under_the_prefix(host: FlaskClient) -> None:
    res = host.post("/queue/prodcons", json={"task": "no.such"})
    assert res.status_code == 400 and "unknown task" in res.get_json()["error"]
    res = host.post("/queue/login", data=json.dumps({"token": "x" * 4000}),
                    content_type="application/json")
    assert res.status_code == 413 and "error" in res.get_json()


def test_the_event_stream_is_served_under_the_prefix(host: FlaskClient) -> None:
    res = host.get("/queue/events?max_s=0.3")
    assert res.mimetype == "text/event-stream"
    assert "event: snapshot" in res.get_data(as_text=True)


def test_a_token_from_the_host_config_guards_writes_and_reads(rq: App, tmp_path: Path) -> None:
    site = Flask("tokened")
    site.config.update(TESTING=True, REDISQ_WEB_TOKEN=TOKEN)
    Redisq(site, rq, url_prefix="/ops/queue/")
    client = site.test_client()
    try:
        res = client.post("/ops/queue/prodcons", json={"task": "web.add", "args": [1, 1]})
        assert res.status_code == 401
        assert client.get("/ops/queue/jobs/x").status_code == 401
        res = client.post("/ops/queue/prodcons", json={"task": "web.add", "args": [1, 1]},
                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 202
        res = client.post("/ops/queue/login", json={"token": TOKEN})
        cookie = res.headers["Set-Cookie"]
        assert res.status_code == 200 and "Path=/ops/queue/" in cookie
    finally:
        state(site).hub.close()


def test_init_app_and_the_mount_rules(rq: App) -> None:
    ext = Redisq(url_prefix="/q")
    site = Flask("late")
    ext.init_app(site, rq)
    try:
        assert site.test_client().get("/q/").status_code == 200
        with pytest.raises(ConfigError, match="already mounted"):
            ext.init_app(site, rq)
    finally:
        state(site).hub.close()
    for prefix in ("", "/", "queue", "/<x>"):
        with pytest.raises(ConfigError, match="url_prefix"):
            Redisq(Flask("bad"), rq, url_prefix=prefix)
    with pytest.raises(ConfigError, match="TESTING"):
        Redisq(Flask("bad"), rq, config={"TESTING": True})
    with pytest.raises(ConfigError):  # a token too short to be one
        Redisq(Flask("bad"), rq, config={"web_token": "short"})
