"""rediss:// works end to end: producer, worker and subscriber over TLS, verified against the
CA; a server whose certificate the CA did not sign is refused (an error, not a hang)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq import App, config
from redisq.backend.connection import connect
from redisq.broker.channel import Subscriber
from redisq.worker.prodcons import Worker
from tests.support.tls import TLSFront, tls_redis


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca_and_cert(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-ca.key", "-out",
            f"{name}-ca.pem", "-days", "2", "-subj", f"/CN={name}-ca", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.pem", "-CAkey",
            f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", "ext", cwd=d)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A server reached over TLS (natively, or through tests/support/tls.py's front when the
    binary has no TLS) with a certificate the "good" CA signed."""
    make_ca_and_cert(tmp_path, "good")
    make_ca_and_cert(tmp_path, "other")
    with tls_redis(tmp_path / "data", tmp_path, "good") as tls_port:
        yield tmp_path, tls_port


def test_everything_over_tls(tls_server: tuple[Path, int]) -> None:
    certs, port = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs / 'good-ca.pem'}"
    app = App(url)

    @app.task(name="tls.add")
    def add(a: int, b: int) -> int:
        return a + b

    sub = Subscriber(app.connect("tls-sub"), channels=["news"])
    sub.get(0.05)
    job = add.delay(2, 2)
    assert Worker(app, config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 1}, {})
                  ).run() == 0
    assert job.result(2) == 4
    assert app.publish("news", {"n": 1}) == 1
    msg = sub.get(2)
    assert msg is not None and msg.data == b'{"n":1}'
    sub.close()


def test_wrong_ca_is_refused(tls_server: tuple[Path, int]) -> None:
    certs, port = tls_server
    client = connect(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs / 'other-ca.pem'}", "t")
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_the_tls_front_for_binaries_without_tls(tmp_path: Path, redis_url: str) -> None:
    """tests/support/tls.py's front, which the TLS tests use when the server binary has no TLS
    (REDISQ_TEST_SERVER=embedded): exercised here on every run, so it cannot rot unseen on a
    machine whose binary has TLS. Verified TLS passes; a wrong CA is refused; with plain_too a
    plain client gets through on the same port (the sentinel test needs that)."""
    make_ca_and_cert(tmp_path, "good")
    make_ca_and_cert(tmp_path, "other")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    front = TLSFront(port, tmp_path / "good.pem", tmp_path / "good.key", plain_too=True)
    try:
        ok = connect(f"rediss://127.0.0.1:{front.port}/0?ssl_ca_certs={tmp_path / 'good-ca.pem'}",
                     "t")
        assert ok.set("via", "front") and ok.get("via") == b"front"
        bad = connect(f"rediss://127.0.0.1:{front.port}/0?ssl_ca_certs={tmp_path / 'other-ca.pem'}",
                      "t")
        with pytest.raises(redis.ConnectionError):
            bad.ping()
        assert redis.Redis(port=front.port, socket_timeout=2).get("via") == b"front"  # plain
    finally:
        front.close()
