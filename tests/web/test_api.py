"""The write routes, job status and queue actions, with every error status, through Flask's
test client against a real Redis."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from redisq import App
from redisq.backend import keys
from redisq.worker.prodcons import Worker
from tests.support.inproc import running
from tests.support.wait import wait_until
from tests.web.conftest import MAX_BODY
from webapp import create_app
from webapp.body import _loads, _no_constants

TOKEN = "s3cret-s3cret-s3cret"


def nothing_enqueued(rq: App) -> bool:
    """No message, no job record, no counter: a rejected request left no trace."""
    client = rq.client
    return (client.llen(keys.pending("default")) == 0 and client.zcard(keys.delayed("default")) == 0
            and not client.hget(keys.stats("default"), "enqueued")
            and not list(client.scan_iter(match="*:job:*")))


def test_enqueue_then_status_until_succeeded(client: FlaskClient, rq: App, worker: Worker) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [2, 3]})
    assert res.status_code == 202 and res.mimetype == "application/json"
    body = res.get_json()
    assert body["status_url"] == f"/jobs/{body['job_id']}" and body["duplicate"] is False
    assert rq.job(body["job_id"]).result(5) == 5
    status = client.get(body["status_url"]).get_json()
    assert status["status"] == "succeeded" and status["result"] == 5
    assert status["task"] == "web.add" and status["attempts"] == 1
    assert isinstance(status["finished_at"], float)


def test_kwargs_queue_and_delay(client: FlaskClient, rq: App) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "kwargs": {"a": 1, "b": 2},
                                         "queue": "other", "delay_s": 60})
    assert res.status_code == 202
    status = client.get(res.get_json()["status_url"]).get_json()
    assert status["queue"] == "other" and status["status"] == "queued" and status["due_at"] > 0
    assert rq.client.zcard(keys.delayed("other")) == 1
    # Optional fields may be null, meaning "not given".
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "kwargs": None,
                                         "queue": None, "delay_s": None})
    assert res.status_code == 202 and rq.client.llen(keys.pending("default")) == 1


def test_failed_job_shows_its_error(client: FlaskClient, rq: App, worker: Worker) -> None:
    job_id = client.post("/prodcons", json={"task": "web.boom"}).get_json()["job_id"]
    with pytest.raises(Exception, match="kaput"):
        rq.job(job_id).result(5)
    status = client.get(f"/jobs/{job_id}").get_json()
    assert status["status"] == "dead" and status["error_type"] == "RuntimeError"
    assert status["error_message"] == "kaput"
    assert "traceback" not in status  # no stack traces over HTTP


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [
    ('{"task": "web.add"}', "text/plain", 415, "Content-Type"),
    ('{"task": "web.add"}', None, 415, "Content-Type"),
    ("task=web.add", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ("", "application/json", 400, "not valid JSON"),
    (b"\xff\xfe", "application/json", 400, "not valid JSON"),
    ('{"task": "web.add", "delay_s": NaN}', "application/json", 400, "not valid JSON"),
    ('{"task": "web.add", "delay_s": Infinity}', "application/json", 400, "not valid JSON"),
    ('{"task": "web.add", "args": ' + "[" * 1000 + "]" * 1000 + "}", "application/json", 400,
     "not valid JSON"),
    ("[1, 2]", "application/json", 400, "JSON object"),
    ('"web.add"', "application/json", 400, "JSON object"),
    ("{}", "application/json", 400, "missing field 'task'"),
    ('{"task": null}', "application/json", 400, "'task' must be a string"),
    ('{"task": 5}', "application/json", 400, "'task' must be a string"),
    ('{"task": "web.add", "args": {"a": 1}}', "application/json", 400, "'args' must be a list"),
    ('{"task": "web.add", "args": "1,2"}', "application/json", 400, "'args' must be a list"),
    ('{"task": "web.add", "kwargs": []}', "application/json", 400, "'kwargs' must be an object"),
    ('{"task": "web.add", "queue": 3}', "application/json", 400, "'queue' must be a string"),
    ('{"task": "web.add", "delay_s": "soon"}', "application/json", 400, "'delay_s' must be"),
    ('{"task": "web.add", "delay_s": true}', "application/json", 400, "'delay_s' must be"),
    ('{"task": "web.add", "delay_s": -1}', "application/json", 400, ">= 0"),
    ('{"task": "web.add", "delay_s": 1e12}', "application/json", 400, "<="),
    ('{"task": "os.system", "args": ["rm"]}', "application/json", 400, "unknown task 'os.system'"),
    ('{"task": "", "args": []}', "application/json", 400, "unknown task"),
    ('{"task": "web.add", "args": [1]}', "application/json", 400, "bad arguments for web.add"),
    ('{"task": "web.add", "args": [1, 2, 3]}', "application/json", 400, "bad arguments"),
    ('{"task": "web.add", "kwargs": {"c": 1}}', "application/json", 400, "bad arguments"),
    ('{"task": "web.add", "extra": 1}', "application/json", 400, "unknown field 'extra'"),
    ('{"task": "web.add", "queue": "a b"}', "application/json", 400, "queue name"),
    ('{"task": "web.add", "queue": ""}', "application/json", 400, "queue"),
])
def test_bad_input_is_a_clear_4xx_and_enqueues_nothing(
        client: FlaskClient, rq: App, body: str | bytes, ctype: str | None, status: int,
        message: str) -> None:
    res = client.post("/prodcons", data=body, content_type=ctype)
    assert res.status_code == status, res.get_json()
    assert res.mimetype == "application/json" and message in res.get_json()["error"]
    assert nothing_enqueued(rq)


BODIES = [b'{"task": "web.add", "args": [1, 2]}', '{"task": "w\u00e9b"}'.encode("utf-16"),
          '{"task": "web.add"}'.encode("utf-32-le"), b'\xef\xbb\xbf{"task": "web.add"}',
          b'{"a": "\\ud800"}', b'{"a": 1} x', b"", b"\xff\xfe", b'{"a": NaN}', b"[-Infinity]",
          b"\x00\x00\x00", b" [1e999] ", b'{"a": 1, "a": 2}']


@pytest.mark.parametrize("raw", BODIES)
def test_body_parse_is_json_loads(raw: bytes) -> None:
    """The write routes' own decoder (made once, for speed) reads a body exactly as
    ``json.loads(raw, parse_constant=...)`` would: any UTF, a BOM, the same errors."""
    try:
        expected: object = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        expected = type(exc)
    try:
        got: object = _loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        got = type(exc)
    assert got == expected


def test_utf16_body_is_accepted(client: FlaskClient, rq: App) -> None:
    res = client.post("/prodcons", data='{"task": "web.add", "args": [1, 2]}'.encode("utf-16"),
                      content_type="application/json")
    assert res.status_code == 202 and rq.client.llen(keys.pending("default")) == 1


def test_oversized_body_is_413(client: FlaskClient, rq: App) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": ["x" * MAX_BODY, 1]})
    assert res.status_code == 413 and "error" in res.get_json()
    res = client.post("/pubsub", json={"channel": "news", "message": "x" * MAX_BODY})
    assert res.status_code == 413 and "error" in res.get_json()
    assert nothing_enqueued(rq)


def test_duplicate_unique_jobs(client: FlaskClient, rq: App) -> None:
    # on_duplicate="raise": 409 naming the job that is already there.
    first = client.post("/prodcons", json={"task": "web.once", "args": ["k"]}).get_json()
    res = client.post("/prodcons", json={"task": "web.once", "args": ["k"]})
    assert res.status_code == 409 and res.get_json()["job_id"] == first["job_id"]
    # on_duplicate="return" (the default): 202 with the existing job, marked as a duplicate.
    a = client.post("/prodcons", json={"task": "web.project", "args": [7]}).get_json()
    b = client.post("/prodcons", json={"task": "web.project", "kwargs": {"project_id": 7}})
    assert b.status_code == 202 and b.get_json()["job_id"] == a["job_id"]
    assert b.get_json()["duplicate"] is True
    assert rq.client.llen(keys.pending("default")) == 2


def test_pubsub_publish_and_errors(client: FlaskClient, rq: App) -> None:
    pubsub = rq.client.pubsub()
    pubsub.subscribe("news")
    wait_until(lambda: pubsub.get_message(timeout=0.1), 2, what="subscription")
    res = client.post("/pubsub", json={"channel": "news", "message": {"kind": "x"}})
    assert res.status_code == 202 and res.get_json() == {"receivers": 1}
    msg = wait_until(lambda: pubsub.get_message(timeout=0.1), 2, what="the message")
    assert msg["data"] == b'{"kind":"x"}'
    pubsub.close()
    for message in ("text", 3, 2.5, True, [1, 2]):
        assert client.post("/pubsub", json={"channel": "news", "message": message}).status_code == 202
    for body, status in [({"channel": "news"}, 400), ({"message": 1}, 400),
                         ({"channel": "a b", "message": 1}, 400),
                         ({"channel": 5, "message": 1}, 400),
                         ({"channel": "news", "message": None}, 400),
                         ({"channel": "news", "message": 1, "durable": True}, 400)]:
        res = client.post("/pubsub", json=body)
        assert res.status_code == status and res.get_json()["error"], body
    assert client.post("/pubsub", data="x", content_type="text/plain").status_code == 415
    assert client.post("/pubsub", data="{", content_type="application/json").status_code == 400


def test_unknown_job_and_routes_are_json_errors(client: FlaskClient) -> None:
    res = client.get("/jobs/nope")
    assert res.status_code == 404 and res.get_json()["error"] == "no job nope"
    res = client.get("/no/such/page")
    assert res.status_code == 404 and res.get_json()["error"]
    assert client.post("/jobs/nope/cancel", json={}).status_code == 404
    res = client.get("/jobs/nope/cancel")
    assert res.status_code == 405 and res.get_json()["error"]
    assert client.delete("/prodcons").status_code == 405


def test_cancel_requeue_purge(client: FlaskClient, rq: App) -> None:
    job_id = client.post("/prodcons", json={"task": "web.add", "args": [1, 1]}).get_json()["job_id"]
    client.post("/prodcons", json={"task": "web.add", "args": [2, 2]})
    res = client.post(f"/jobs/{job_id}/cancel", json={})
    assert res.status_code == 200 and res.get_json()["status"] == "cancelled"
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
    res = client.post(f"/jobs/{job_id}/cancel", json={})
    assert res.status_code == 409 and "cancelled" in res.get_json()["error"]
    assert rq.client.llen(keys.pending("default")) == 1  # the cancelled job left the queue
    assert client.post("/queues/default/purge", json={}).get_json() == {"queue": "default", "purged": 1}
    assert client.post("/queues/default/requeue", json={}).get_json()["requeued"] == 0
    assert client.post("/queues/a%20b/purge", json={}).status_code == 400


def test_requeue_brings_dead_jobs_back(client: FlaskClient, rq: App) -> None:
    job_id = client.post("/prodcons", json={"task": "web.boom"}).get_json()["job_id"]
    with running(rq):  # stopped and joined on exit, so the requeued job stays queued
        wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] == "dead", 5,
                   what="the job to die")
    snap = client.get("/api/snapshot").get_json()
    assert snap["failures"][0]["job_id"] == job_id
    assert snap["failures"][0]["error_type"] == "RuntimeError"
    assert snap["queues"]["default"]["dead_letters"] == 1
    assert client.post("/queues/default/requeue", json={}).get_json()["requeued"] == 1
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    assert client.get("/api/snapshot").get_json()["failures"] == []


@pytest.mark.parametrize("route", ["/prodcons", "/pubsub", "/jobs/x/cancel",
                                   "/queues/default/requeue", "/queues/default/purge"])
def test_token_protects_every_write(rq: App, route: str) -> None:
    client = create_app({"REDISQ_APP": rq, "REDISQ_WEB_TOKEN": TOKEN}).test_client()
    body = {"task": "web.add", "args": [1, 2]} if route == "/prodcons" else \
        {"channel": "c", "message": 1}
    res = client.post(route, json=body)
    assert res.status_code == 401 and res.headers["WWW-Authenticate"] == "Bearer"
    for header in ("Bearer wrong", f"Bearer {TOKEN}2", "Bearer ", f"Basic {TOKEN}", TOKEN):
        res = client.post(route, json=body, headers={"Authorization": header})
        assert res.status_code in (401, 403) and res.get_json()["error"], header
    assert nothing_enqueued(rq)
    res = client.post(route, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code not in (401, 403)
    assert client.get("/jobs/x").status_code == 401  # reads need the token too
    assert client.get("/jobs/x", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert client.get("/").status_code == 200  # the page itself stays open (to log in)


def test_token_accepted_enqueues(rq: App) -> None:
    client = create_app({"REDISQ_APP": rq, "web_token": TOKEN}).test_client()
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2]},
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 202 and rq.client.llen(keys.pending("default")) == 1
    assert client.post("/prodcons", json={"task": "web.add", "args": [1, 2]},
                       headers={"Authorization": "Bearer nope"}).status_code == 403


def test_redis_down_is_503_not_500(rq: App) -> None:
    broken = App("redis://127.0.0.1:1/0")

    @broken.task(name="web.add")
    def add(a: int, b: int) -> int:
        return a + b

    client = create_app({"REDISQ_APP": broken}).test_client()
    for method, route, body in [("post", "/prodcons", {"task": "web.add", "args": [1, 2]}),
                                ("post", "/pubsub", {"channel": "c", "message": 1}),
                                ("get", "/jobs/abc", None), ("get", "/api/snapshot", None)]:
        res = getattr(client, method)(route, json=body)
        assert res.status_code == 503, route
        assert res.get_json()["error"] and res.headers["Retry-After"] == "1"
        assert "Traceback" not in res.get_data(as_text=True)


def test_unexpected_error_is_a_json_500_without_traceback(rq: App, caplog) -> None:
    app = create_app({"REDISQ_APP": rq})

    @app.get("/explode")
    def explode() -> str:
        raise KeyError("secret detail")

    res = app.test_client().get("/explode")
    assert res.status_code == 500 and res.get_json() == {"error": "internal error"}
    assert "secret" not in res.get_data(as_text=True)
    assert "KeyError" in caplog.text  # logged server-side, with its traceback


def test_hello_and_pages(client: FlaskClient) -> None:
    assert client.get("/hello").get_data() == b"hello"
    for page, marker in (("/", b'data-page="dashboard"'), ("/prodcons", b'data-page="prodcons"'),
                         ("/pubsub", b'data-page="pubsub"')):
        res = client.get(page)
        assert res.status_code == 200 and b"<html" in res.data and marker in res.data
        assert b"http://" not in res.data and b"https://" not in res.data  # nothing remote
        # Script and styles from this origin only; no inline code the CSP would have to allow.
        assert "default-src 'self'" in res.headers["Content-Security-Policy"]
        assert b"<script>" not in res.data and b"style=" not in res.data
    assert b"web.add" in client.get("/").data  # the enqueue form lists the registered tasks
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_create_app_config(redis_url: str) -> None:
    from redisq import ConfigError

    app = create_app({"url": redis_url, "TESTING": True, "REDISQ_WEB_MAX_BODY_BYTES": 100,
                      "REDISQ_APP": "webapp.tasks:app"})
    assert app.testing and app.config["MAX_CONTENT_LENGTH"] == 100
    assert "demo.add" in app.extensions["redisq"].queue_app.tasks
    with pytest.raises(ConfigError, match="web_tokn"):
        create_app({"url": redis_url, "web_tokn": "x"})
    with pytest.raises(ConfigError, match="not a redisq App"):
        create_app({"REDISQ_APP": "webapp:create_app"})
    with pytest.raises(ConfigError, match="cannot import"):
        create_app({"REDISQ_APP": "no_such_module:app"})


def test_chunked_bodies_are_read_and_capped(live_server: str, rq: App) -> None:
    """Without a Content-Length (chunked transfer encoding) werkzeug reads the body and
    enforces the same limit."""
    import http.client
    import json
    from urllib.parse import urlparse

    def post_chunked(body: bytes) -> tuple[int, dict]:
        url = urlparse(live_server)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.request("POST", "/prodcons", body=iter([body[:10], body[10:]]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        res = conn.getresponse()
        out = res.status, json.loads(res.read())
        conn.close()
        return out

    status, body = post_chunked(b'{"task": "web.add", "args": [1, 2]}')
    assert status == 202 and body["job_id"]
    status, body = post_chunked(json.dumps({"task": "web.add",
                                            "args": ["x" * MAX_BODY, 1]}).encode())
    assert status == 413 and body["error"]
    assert rq.client.llen(keys.pending("default")) == 1
