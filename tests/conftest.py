"""Shared fixtures.

Real servers are started by the tests themselves on free loopback ports (never the machine's
6379), from ``redis-server``/``valkey-server`` on PATH or the ``embedded`` extra. A missing binary
fails the suite: ``find_server_binary`` raises instead of skipping.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq import App
from redisq.backend import urls
from redisq.backend.embedded import RedisServer, embedded_binary, find_server_binary, free_port
from tests.support.cluster import ClusterSet
from tests.support.tls import server_description

# Tests must never fall back to an ambient REDIS_URL/REDISQ_URL (e.g. the machine's own 6379),
# nor to the default URL (redis://127.0.0.1:6379/0, the machine's Redis): code under test that
# ends up with no URL at all gets a port where nothing listens, and fails at once.
os.environ.pop("REDIS_URL", None)
os.environ.pop("REDISQ_URL", None)
urls.DEFAULT_URL = "redis://127.0.0.1:1/0"


# REDISQ_TEST_SERVER=embedded (`make test-embedded`): the whole suite on the `embedded` extra's
# server, as on a machine whose only server is that one: its binary is put first on PATH as
# redis-server and valkey-server, for this process and every subprocess it starts. Popped
# from the environment: it is no redisq setting (an unknown REDISQ_* variable is an error).
TEST_SERVER = os.environ.pop("REDISQ_TEST_SERVER", "path")
if TEST_SERVER == "embedded":
    _embedded = embedded_binary()
    if _embedded is None:
        raise RuntimeError("REDISQ_TEST_SERVER=embedded needs the embedded extra installed")
    _bin = Path(tempfile.mkdtemp(prefix="redisq-test-bin-"))
    for _name in ("redis-server", "valkey-server"):
        (_bin / _name).symlink_to(_embedded)
    os.environ["PATH"] = f"{_bin}{os.pathsep}{os.environ.get('PATH', '')}"
elif TEST_SERVER != "path":
    raise RuntimeError(f"REDISQ_TEST_SERVER is 'path' (the default) or 'embedded', "
                       f"not {TEST_SERVER!r}")


def pytest_sessionstart(session: pytest.Session) -> None:
    find_server_binary()  # raises ServerNotFound: the suite fails loudly, nothing is skipped


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which server the suite runs on, and how its TLS tests get TLS (tests/support/tls.py)."""
    return [f"redis server: {server_description()}"]


def start_server(tmp: Path, **kwargs: object) -> RedisServer:
    return RedisServer(tmp / "redis", port=free_port(), **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real server for tests that only need *a* Redis (each test gets a flushed db)."""
    server = start_server(tmp_path_factory.mktemp("shared"))
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private real server the test may restart, pause or kill (AOF, fsync always)."""
    srv = start_server(tmp_path, appendfsync="always")
    yield srv
    srv.resume()
    srv.kill()


@pytest.fixture
def redis_url(shared_server: RedisServer) -> Iterator[str]:
    """URL of the shared real server, flushed before each test."""
    admin = shared_server.client()
    admin.flushall()
    admin.script_flush()
    admin.close()
    yield shared_server.url


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    """An App on the shared real server (test modules with their own tasks override it)."""
    application = App(redis_url)
    yield application
    application.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    """A real three-master Redis Cluster on loopback ports, started for the test."""
    c = ClusterSet(tmp_path / "cluster").start()
    yield c
    c.stop()


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> Iterator[redis.Redis]:
    import fakeredis

    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


@pytest.fixture(params=["fake", "real"])
def any_redis(request: pytest.FixtureRequest) -> redis.Redis:
    """The same contract test against fakeredis and a real server."""
    name = "fake_redis" if request.param == "fake" else "real_redis"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
