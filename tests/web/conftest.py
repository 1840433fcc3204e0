"""Fixtures of the web tests: a redisq App with test tasks on the shared real server, the Flask
app built around it, and (for tests that need jobs to finish) an in-process worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from redisq import App, current_job
from redisq.worker.prodcons import Worker
from tests.support.inproc import running
from webapp import create_app, state

MAX_BODY = 2048


def make_rq(url: str) -> App:
    app = App(url)

    @app.task(name="web.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="web.other", queue="other")  # declares "other": the web may enqueue there
    def other() -> None: ...

    @app.task(name="web.boom", retries=0)
    def boom() -> None:
        raise RuntimeError("kaput")

    @app.task(name="web.once", unique_by="key", on_duplicate="raise")
    def once(key: str) -> None: ...

    @app.task(name="web.project", unique_by="project_id")
    def project(project_id: int) -> None: ...

    @app.task(name="web.steps")
    def steps(n: int, gate_key: str) -> int:
        """Reports progress, then waits for the test to set ``gate_key`` (no fixed sleeps)."""
        current_job().progress(0.5, "half way")
        deadline = time.monotonic() + 5
        while not app.client.exists(gate_key) and time.monotonic() < deadline:
            time.sleep(0.01)
        return n

    return app


@pytest.fixture
def rq(redis_url: str) -> Iterator[App]:
    app = make_rq(redis_url)
    yield app
    app.close()


@pytest.fixture
def flask_app(rq: App) -> Iterator[Flask]:
    # A short keepalive: a stream whose client left notices it (on its next write) quickly.
    app = create_app({"REDISQ_APP": rq, "web_max_body_bytes": MAX_BODY, "TESTING": True,
                      "REDISQ_SSE_KEEPALIVE_S": 0.2})
    yield app
    state(app).hub.close()  # no subscription outlives the test (others count them)


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture
def worker(rq: App) -> Iterator[Worker]:
    with running(rq) as w:
        yield w


@pytest.fixture
def live_server(flask_app: Flask) -> Iterator[str]:
    """The app on a real HTTP server (werkzeug, threaded) on a free loopback port."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
