"""The web app's defaults against a hostile page and a hostile client (issue 12, points 2, 3, 4,
6 and 7), through Flask's test client against a real Redis: cross-site and form posts, foreign
Host headers, short tokens, read tokens and the dashboard's session cookie, reserved channels,
undeclared queues, junk in stored data, the demo counter, and create_app without an App."""

from __future__ import annotations

import json
import logging
import time

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from redisq import App, ConfigError, config
from redisq.backend import keys
from redisq.ops.cli import main as cli
from tests.web.test_api import nothing_enqueued
from webapp import create_app

WRITE = "write-token-0123456789"
READ = "read-token-0123456789"
EVIL = "https://evil.example"
WRITES = ["/queues/default/purge", "/queues/default/requeue", "/jobs/x/cancel", "/prodcons",
          "/pubsub"]
READS = ["/events", "/events/news", "/jobs/x", "/api/snapshot", "/metrics"]


def body_for(route: str) -> dict:
    return {"/prodcons": {"task": "web.add", "args": [1, 2]},
            "/pubsub": {"channel": "news", "message": 1}}.get(route, {})


def app_with(rq: App, **settings: object) -> Flask:
    return create_app({"REDISQ_APP": rq, "TESTING": True, **settings})


# -- point 2: no token is no longer no protection ------------------------------------------
@pytest.mark.parametrize("route", WRITES)
def test_cross_site_form_post_is_refused(client: FlaskClient, rq: App, route: str) -> None:
    queued = rq.enqueue("web.add", [1, 1])  # a purge or a cancel would take it away
    form = {"task": "web.add", "channel": "news", "message": "1"}
    res = client.post(route, data=form, headers={"Origin": EVIL})  # the classic CSRF form
    assert res.status_code == 403 and "cross-site" in res.get_json()["error"]
    res = client.post(route, data="{}", content_type="text/plain",
                      headers={"Sec-Fetch-Site": "cross-site"})
    assert res.status_code == 403
    # Same origin, but a form or text/plain body (no preflight in a browser): 415.
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        res = client.post(route, data="task=web.add", content_type=ctype,
                          headers={"Origin": "http://localhost"})
        assert res.status_code == 415, ctype
    # JSON from a foreign origin (or the opaque "null" origin of a sandboxed frame): 403.
    for origin in (EVIL, "null", "http://localhost.evil.example", "http://localhost:1"):
        res = client.post(route, json=body_for(route), headers={"Origin": origin})
        assert res.status_code == 403, origin
    assert rq.client.llen(keys.pending("default")) == 1 and queued.status == "queued"


def test_cross_site_is_refused_with_a_valid_token_too(rq: App) -> None:
    client = app_with(rq, web_token=WRITE).test_client()
    auth = {"Authorization": f"Bearer {WRITE}"}
    res = client.post("/prodcons", json=body_for("/prodcons"), headers={**auth, "Origin": EVIL})
    assert res.status_code == 403 and nothing_enqueued(rq)
    res = client.post("/prodcons", json=body_for("/prodcons"),
                      headers={**auth, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert res.status_code == 202


def test_same_origin_json_posts_pass(client: FlaskClient, rq: App) -> None:
    for headers in ({"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"},
                    {"Sec-Fetch-Site": "none"}, {}):
        res = client.post("/prodcons", json=body_for("/prodcons"), headers=headers)
        assert res.status_code == 202, headers
    res = client.post("/prodcons", data=json.dumps(body_for("/prodcons")),
                      content_type="application/json; charset=utf-8")
    assert res.status_code == 202


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io",
                                  "localhost.evil.example", "", "10.0.0.8:8000"])
def test_foreign_host_is_400(client: FlaskClient, rq: App, host: str) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 still sends its own name."""
    for method, route in (("get", "/"), ("get", "/api/snapshot"), ("post", "/prodcons")):
        res = getattr(client, method)(route, json=body_for(route), headers={"Host": host})
        assert res.status_code == 400 and "Host" in res.get_json()["error"], (host, route)
    assert nothing_enqueued(rq)
    assert client.get("/healthz", headers={"Host": host}).status_code == 503  # probes by address


def test_trusted_hosts_any_port_and_setting(rq: App) -> None:
    client = app_with(rq).test_client()
    for host in ("localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    client = app_with(rq, web_token=WRITE,
                      web_trusted_hosts="queue.example.com,.corp.example").test_client()
    for host, status in (("queue.example.com", 200), ("a.corp.example:443", 200),
                         ("corp.example", 200), ("localhost", 400), ("example.com", 400)):
        assert client.get("/", headers={"Host": host}).status_code == status, host


def test_without_a_token_only_this_machine_is_answered(rq: App) -> None:
    client = app_with(rq).test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    res = client.post("/prodcons", json=body_for("/prodcons"), environ_base=remote)
    assert res.status_code == 403 and nothing_enqueued(rq)
    assert client.get("/", environ_base=remote).status_code == 403
    assert client.get("/", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    client = app_with(rq, web_token=WRITE).test_client()  # a token: anyone may try it
    res = client.post("/prodcons", json=body_for("/prodcons"), environ_base=remote,
                      headers={"Authorization": f"Bearer {WRITE}"})
    assert res.status_code == 202


@pytest.mark.parametrize("settings", [{"web_token": ""}, {"web_token": "short"},
                                      {"REDISQ_WEB_TOKEN": "x" * 15},
                                      {"web_token": WRITE, "web_read_token": "tiny"},
                                      {"web_read_token": READ},
                                      {"web_trusted_hosts": "queue.example.com"},
                                      {"web_trusted_hosts": "*"},
                                      {"web_trusted_hosts": ""}])
def test_unsafe_settings_are_refused_at_start(rq: App, settings: dict) -> None:
    with pytest.raises(ConfigError):
        app_with(rq, **settings)


def test_insecure_override_is_logged(rq: App, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "redisq.config"):
        app_with(rq, web_trusted_hosts="queue.example.com", web_allow_insecure=True)
    assert "without a token" in caplog.text and "queue.example.com" in caplog.text


def test_bind_beyond_loopback_without_token_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        config.check_web(config.load({}, {}), host)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError, match="WEB_TOKEN"):
            config.check_web(config.load({}, {}), host)
        config.check_web(config.load({"web_token": WRITE}, {}), host)
    with caplog.at_level(logging.WARNING, "redisq.config"):
        config.check_web(config.load({"web_allow_insecure": True}, {}), "0.0.0.0")
    assert "0.0.0.0" in caplog.text


@pytest.mark.parametrize("args", [["web", "--host", "0.0.0.0", "--app", "webapp.tasks:app"],
                                  ["up", "--demo"], ["web", "--app", "webapp.tasks:app"]])
def test_cli_refuses_open_binds_and_short_tokens(args: list[str]) -> None:
    env = {"REDISQ_WEB_HOST": "0.0.0.0"} if args[0] == "up" else {}
    if args == ["web", "--app", "webapp.tasks:app"]:
        env = {"REDISQ_WEB_TOKEN": "short"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "WEB_TOKEN" in result.output or "16 characters" in result.output


def test_up_needs_an_app_or_demo() -> None:
    result = CliRunner().invoke(cli, ["up"], env={"REDISQ_APP": None})
    assert result.exit_code == 2 and "--demo" in result.output


# -- point 4: reads need a token when one is set ----------------------------------------------
@pytest.mark.parametrize("route", READS)
def test_read_token_guards_reads(rq: App, route: str) -> None:
    client = app_with(rq, web_token=WRITE, web_read_token=READ).test_client()
    query = "?max_s=0" if route.startswith("/events") else ""
    res = client.get(route + query)
    assert res.status_code == 401 and res.headers["WWW-Authenticate"] == "Bearer"
    assert client.get(route + query, headers={"Authorization": "Bearer nope"}).status_code == 401
    for token in (READ, WRITE):  # the write token grants every read too
        res = client.get(route + query, headers={"Authorization": f"Bearer {token}"})
        assert res.status_code in (200, 404), (route, token)
    # The read token is no write token.
    res = client.post("/prodcons", json=body_for("/prodcons"),
                      headers={"Authorization": f"Bearer {READ}"})
    assert res.status_code == 403 and nothing_enqueued(rq)
    for page in ("/", "/prodcons", "/pubsub", "/static/app.js"):
        assert client.get(page).status_code == 200  # the pages load (to log in)
    assert client.get("/healthz").status_code == 503  # no worker; but no token needed


def test_write_token_alone_guards_reads_too(rq: App) -> None:
    client = app_with(rq, web_token=WRITE).test_client()
    assert client.get("/api/snapshot").status_code == 401
    assert client.get("/api/snapshot",
                      headers={"Authorization": f"Bearer {WRITE}"}).status_code == 200


def test_dashboard_login_cookie_grants_reads_only(rq: App) -> None:
    client = app_with(rq, web_token=WRITE, web_read_token=READ).test_client()
    assert client.post("/login", json={"token": "wrong"}).status_code == 403
    assert client.post("/login", json={"token": READ}, headers={"Origin": EVIL}).status_code == 403
    assert client.get("/api/snapshot").status_code == 401
    res = client.post("/login", json={"token": READ})
    assert res.status_code == 200 and res.get_json() == {"read": True, "write": False}
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and READ not in cookie
    assert client.get("/api/snapshot").status_code == 200
    assert client.get("/events?max_s=0").status_code == 200  # what EventSource needs
    # The cookie is no write credential.
    assert client.post("/prodcons", json=body_for("/prodcons")).status_code == 401
    assert client.post("/logout", json={}).status_code == 200
    assert client.get("/api/snapshot").status_code == 401
    # Forged, tampered and expired cookies are worthless.
    past = int(time.time()) - 1
    for value in ("1", f"{past}.00", f"{int(time.time()) + 99}.{'0' * 64}", "x.y", "é.é"):
        client.set_cookie("redisq_session", value)
        assert client.get("/api/snapshot").status_code == 401, value
    res = client.post("/login", json={"token": WRITE})
    assert res.get_json() == {"read": True, "write": True}


# -- point 3: dashboard content cannot be forged ----------------------------------------------
@pytest.mark.parametrize("channel", ["redisq:events", "redisq:anything", "__keyspace@0__:x",
                                     "__keyevent@0__:expired", "__redis__:invalidate"])
def test_reserved_channels_are_refused(client: FlaskClient, rq: App, channel: str) -> None:
    res = client.post("/pubsub", json={"channel": channel, "message": {"type": "snapshot"}})
    assert res.status_code == 403 and "reserved" in res.get_json()["error"]
    res = client.get(f"/events/{channel}?max_s=0")
    assert res.status_code == 403


def test_web_channels_allow_list(rq: App) -> None:
    client = app_with(rq, web_channels="news,alerts").test_client()
    assert client.post("/pubsub", json={"channel": "news", "message": 1}).status_code == 202
    res = client.post("/pubsub", json={"channel": "other", "message": 1})
    assert res.status_code == 403 and "REDISQ_WEB_CHANNELS" in res.get_json()["error"]
    assert client.get("/events/other?max_s=0").status_code == 403
    assert client.get("/events/alerts?max_s=0").status_code == 200


# -- point 6 (web side): only declared queues -------------------------------------------------
def test_only_declared_queues(client: FlaskClient, rq: App) -> None:
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "queue": "junk-1"})
    assert res.status_code == 400 and "declare" in res.get_json()["error"]
    assert not rq.client.sismember(keys.QUEUES, "junk-1") and nothing_enqueued(rq)
    res = client.post("/prodcons", json={"task": "web.add", "args": [1, 2], "queue": "other"})
    assert res.status_code == 202  # web.other declares it
    client = app_with(rq, web_queues="bulk").test_client()
    assert client.post("/prodcons", json={"task": "web.add", "args": [1, 2],
                                          "queue": "bulk"}).status_code == 202
    assert client.post("/prodcons", json={"task": "web.add", "args": [1, 2],
                                          "queue": "other"}).status_code == 400


# -- robust parsing of stored data -------------------------------------------------------------
def test_junk_dead_letters_do_not_break_the_snapshot(client: FlaskClient, rq: App) -> None:
    rq.enqueue("web.add", [1, 2])  # the queue is in the index
    junk = [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"[" * 5000 + b"]" * 5000,
            json.dumps({"failed_at": "yesterday", "job_id": 5, "task": ["x"]}).encode(),
            json.dumps({"failed_at": 1e999}).encode().replace(b"Infinity", b"1e999"),
            json.dumps({"job_id": "j1", "task": "web.add", "error_type": "E", "reason": "r",
                        "failed_at": 100.0}).encode()]
    rq.client.lpush(keys.dead("default"), *junk)
    res = client.get("/api/snapshot")
    assert res.status_code == 200
    failures = res.get_json()["failures"]
    assert {"job_id": "j1", "task": "web.add", "error_type": "E", "reason": "r",
            "failed_at": 100.0, "queue": "default"} in failures
    assert all(isinstance(f["failed_at"], float) for f in failures)
    assert all(f["job_id"] is None or isinstance(f["job_id"], str) for f in failures)
    res = client.get("/events?max_s=0.1")
    assert res.status_code == 200 and "event: snapshot" in res.get_data(as_text=True)


def test_junk_job_record_fields(client: FlaskClient, rq: App) -> None:
    job = rq.enqueue("web.add", [1, 2])
    rq.client.hset(keys.job("default", job.id), mapping={"result": "not json", "progress": "x"})
    res = client.get(f"/jobs/{job.id}")
    assert res.status_code == 200 and res.get_json()["result"] == "not json"


# -- point 7: the demo app is no default, and its counter stays in its own keys ----------------
def test_create_app_without_an_app_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                               redis_url: str) -> None:
    monkeypatch.delenv("REDISQ_APP", raising=False)
    with pytest.raises(ConfigError, match="REDISQ_APP"):
        create_app({"url": redis_url})
    monkeypatch.setenv("REDISQ_APP", "webapp.tasks:app")
    assert "demo.add" in create_app({"url": redis_url}).extensions["redisq"].queue_app.tasks


@pytest.mark.parametrize("key", ["redisq:periodic", "redisq:queues", "demo:countx", "myapp:h",
                                 "demo:count:"[:-1] + "X", 5])
def test_demo_counter_refuses_foreign_keys(key: object) -> None:
    from webapp import tasks

    with pytest.raises(ValueError, match="demo:count"):
        tasks.count.fn(key)


# -- point 10 (web): malformed bodies are a 400, never a 500 -----------------------------------
DEEP = b"[" * 900 + b"]" * 900  # parses; whether it may be enqueued is the nesting cap's call


@pytest.mark.parametrize(("route", "body", "statuses"), [
    ("/pubsub", b'{"channel": "news", "message": 1e400}', {400}),
    ("/pubsub", b'{"channel": "news", "message": {"a": [-1e999]}}', {400}),
    ("/prodcons", b'{"task": "web.add", "args": [1e400, 1]}', {400}),
    ("/prodcons", b'{"task": "web.add", "args": [1, 2], "kwargs": {"a": 1e400}}', {400}),
    ("/pubsub", b'{"channel": "news", "message": ' + DEEP + b"}", {202, 400}),
    ("/prodcons", b'{"task": "web.add", "args": [' + DEEP + b", 1]}", {202, 400}),
])
def test_malformed_bodies_are_400_not_500(client: FlaskClient, rq: App, route: str,
                                          body: bytes, statuses: set[int]) -> None:
    res = client.post(route, data=body, content_type="application/json")
    assert res.status_code in statuses, res.get_json()
    assert res.status_code != 400 or nothing_enqueued(rq)
