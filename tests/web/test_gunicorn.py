"""The web app as deployed: real gunicorn (gthread, as in systemd/ and ``redisq up``) on a free
loopback port, and the Origin, Host, content-type and token rules over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from redisq import App
from redisq.backend.embedded import free_port
from tests.support.procs import ROOT
from tests.support.wait import wait_until

WRITE = "gunicorn-write-token-0123"
READ = "gunicorn-read-token-0123"


@pytest.fixture
def gunicorn(redis_url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_")}
    env.update(PYTHONPATH=str(ROOT), REDISQ_URL=redis_url, REDISQ_APP="webapp.tasks:app",
               REDISQ_WEB_TOKEN=WRITE, REDISQ_WEB_READ_TOKEN=READ)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--worker-class", "gthread", "--threads", "4",
                             "--graceful-timeout", "1", "webapp:create_app()"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or call(host, "GET", "/hello")[0] == 200, 6,
                   interval_s=0.05, what="gunicorn to answer")
        assert proc.poll() is None, "gunicorn exited"
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call(host: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict, http.client.HTTPResponse]:
    """One request with exactly these headers (``Host`` too: http.client lets us forge it)."""
    name, _, port = host.partition(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        res = conn.getresponse()
        if res.getheader("Content-Type", "").startswith("text/event-stream"):
            first = res.read1(64)
            conn.close()
            return res.status, {"first": first.decode()}, res
        data = res.read()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"text": data.decode(errors="replace")}
        return res.status, parsed, res
    except OSError:
        return 0, {}, None  # type: ignore[return-value]
    finally:
        conn.close()


def test_gunicorn_enforces_origin_host_and_tokens(gunicorn: str, redis_url: str) -> None:
    host = gunicorn
    auth = {"Authorization": f"Bearer {WRITE}"}
    job = json.dumps({"task": "demo.add", "args": [2, 3]}).encode()
    as_json = {"Content-Type": "application/json"}
    # DNS rebinding: a foreign Host is refused, on reads and writes alike.
    assert call(host, "GET", "/", headers={"Host": "evil.example"})[0] == 400
    assert call(host, "POST", "/prodcons", job, {**as_json, **auth, "Host": "evil.example"})[0] == 400
    # Cross-site: refused even with the right token.
    assert call(host, "POST", "/prodcons", job,
                {**as_json, **auth, "Origin": "https://evil.example"})[0] == 403
    assert call(host, "POST", "/queues/default/purge", b"{}",
                {**as_json, **auth, "Sec-Fetch-Site": "cross-site"})[0] == 403
    # A form post (what a foreign page can send without a preflight): 415.
    assert call(host, "POST", "/prodcons", b"task=demo.add",
                {"Content-Type": "application/x-www-form-urlencoded", **auth})[0] == 415
    # No token, a wrong one, the read token: no write.
    assert call(host, "POST", "/prodcons", job, as_json)[0] == 401
    assert call(host, "POST", "/prodcons", job, {**as_json, "Authorization": "Bearer nope"})[0] == 403
    assert call(host, "POST", "/prodcons", job,
                {**as_json, "Authorization": f"Bearer {READ}"})[0] == 403
    # Same origin, JSON, the write token: accepted, and really queued.
    status, body, _ = call(host, "POST", "/prodcons", job,
                           {**as_json, **auth, "Origin": f"http://{host}"})
    assert status == 202, body
    rq = App(redis_url)
    try:
        assert rq.job(body["job_id"]).status == "queued"
    finally:
        rq.close()
    # Reads need a token: the job, the feeds, the metrics.
    for path in (body["status_url"], "/api/snapshot", "/metrics", "/events?max_s=1"):
        assert call(host, "GET", path)[0] == 401, path
        assert call(host, "GET", path, headers={"Authorization": f"Bearer {READ}"})[0] == 200, path
    # The dashboard's way: log in once, the session cookie carries the event stream.
    status, _, res = call(host, "POST", "/login", json.dumps({"token": READ}).encode(),
                          {**as_json, "Origin": f"http://{host}"})
    assert status == 200
    cookie = res.getheader("Set-Cookie").split(";")[0]
    status, body, _ = call(host, "GET", "/events?max_s=1", headers={"Cookie": cookie})
    assert status == 200 and body["first"].startswith("retry:")
    # redisq's own channel is not the web's to publish on.
    status, body, _ = call(host, "POST", "/pubsub",
                           json.dumps({"channel": "redisq:events",
                                       "message": {"type": "snapshot"}}).encode(),
                           {**as_json, **auth})
    assert status == 403 and "reserved" in body["error"]
