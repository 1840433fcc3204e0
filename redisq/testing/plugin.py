"""The pytest plugin (entry point ``pytest11``: loaded in every pytest run once redisq is
installed; it only acts for tests that ask for its fixtures).

Fixtures:

* ``redisq_app``: an :class:`~redisq.App` on a Redis of its own, emptied before each test:
  a private server started once per session when a ``redis-server``/``valkey-server`` binary is
  available (on ``PATH``, or the ``embedded`` extra's), else fakeredis. Which one:
  ``--redisq-backend=auto|real|fake`` (or the ``redisq_backend`` ini option). With
  ``--redisq-app=package.module:app`` (or the ``redisq_app`` ini option) it is *your* App,
  pointed at that Redis for the test and given back afterwards; else a new App whose tasks
  the test registers.
* ``redisq_worker``: :func:`redisq.testing.run_until_idle` bound to ``redisq_app``:
  ``counts = redisq_worker()`` runs what the test queued and returns what happened.
* ``redisq_url``: the URL of the private server, emptied for the test.

``@pytest.mark.redisq_backend("real")`` (or ``"fake"``) picks the Redis of one test, module
(``pytestmark``) or class.

Fixture names all start with ``redisq_`` so they do not shadow a project's own ``app``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from redisq import App
    from redisq.backend.embedded import RedisServer

BACKENDS = ("auto", "real", "fake")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redisq")
    group.addoption("--redisq-backend", choices=BACKENDS, default=None,
                    help="Redis for the redisq_app fixture: a private server (real), fakeredis "
                         "(fake), or real when a server binary is found, else fake (auto)")
    group.addoption("--redisq-app", default=None, metavar="MODULE:ATTR",
                    help="the App the redisq_app fixture hands out (default: a new App)")
    parser.addini("redisq_backend", "default of --redisq-backend", default="auto")
    parser.addini("redisq_app", "default of --redisq-app", default="")


def _backend(config: pytest.Config) -> str:
    choice = config.getoption("--redisq-backend") or config.getini("redisq_backend") or "auto"
    if choice not in BACKENDS:
        raise pytest.UsageError(f"redisq_backend must be one of {BACKENDS}, not {choice!r}")
    if choice != "auto":
        return str(choice)
    from redisq.backend.embedded import find_server_binary
    from redisq.errors import ServerNotFound

    try:
        find_server_binary()
    except ServerNotFound:
        return "fake"
    return "real"


@pytest.fixture(scope="session")
def redisq_backend(request: pytest.FixtureRequest) -> str:
    """``"real"`` or ``"fake"``: the Redis behind ``redisq_app`` in this session."""
    return _backend(request.config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redisq_backend(name): the Redis of this test's "
                            "redisq_app: 'real' or 'fake' (default: --redisq-backend)")


@pytest.fixture(scope="session")
def _redisq_server() -> Iterator[RedisServer]:
    """The private server, started when a test first needs it."""
    from redisq.backend.embedded import RedisServer, find_server_binary, free_port
    from redisq.errors import ServerNotFound

    try:
        find_server_binary()
    except ServerNotFound as exc:
        pytest.fail(f"the real backend needs a server binary: {exc}", pytrace=False)

    data = Path(tempfile.mkdtemp(prefix="redisq-pytest-"))
    server = RedisServer(data, port=free_port(), appendfsync="no").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def redisq_url(_redisq_server: RedisServer) -> str:
    """The private server's URL, emptied for this test."""
    admin = _redisq_server.client()
    try:
        admin.flushall()
    finally:
        admin.close()
    return _redisq_server.url


@pytest.fixture
def redisq_app(request: pytest.FixtureRequest, redisq_backend: str) -> Iterator[App]:
    """An App on an empty Redis of its own (see the module docstring)."""
    from redisq import App
    from redisq.testing import fake_app

    spec = request.config.getoption("--redisq-app") or request.config.getini("redisq_app")
    app: App
    if spec:
        from redisq.loading import load_app

        app = load_app(str(spec), "the redisq_app fixture (--redisq-app)")
    else:
        app = App("redis://127.0.0.1:1/0")  # replaced below: never the machine's own Redis
    saved = (app._url, app._client_factory)
    marker = request.node.get_closest_marker("redisq_backend")
    backend = marker.args[0] if marker and marker.args else redisq_backend
    if backend not in ("real", "fake"):
        raise pytest.UsageError(f"@pytest.mark.redisq_backend takes 'real' or 'fake', "
                                f"not {backend!r}")
    if backend == "real":
        app.use_url(request.getfixturevalue("redisq_url"))
        app.use_client_factory(None)
    else:
        fake_app(app)  # a new fakeredis server: empty
    try:
        yield app
    finally:
        app.close()
        app._url, app._client_factory = saved


@pytest.fixture
def redisq_worker(redisq_app: App) -> Callable[..., dict[str, int]]:
    """``redisq_worker(queues=None, timeout_s=10, **kw)``: run_until_idle on redisq_app."""
    from redisq.testing import run_until_idle

    def run(queues: list[str] | None = None, timeout_s: float = 10.0,
            **kwargs: Any) -> dict[str, int]:
        return run_until_idle(redisq_app, queues, timeout_s, **kwargs)

    return run
