"""TLS verification on real servers: a certificate for another host is refused by default
(whatever redis-py's own default), the URL's TLS options reach every connection (sync, asyncio,
through Sentinel), ``ssl_cert_reqs=none`` is logged at WARNING, and ``rediss+sentinel://``
talks TLS to the sentinels as well as to the master."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq import App
from redisq.aio import async_client
from redisq.backend.connection import ConnectionOptions, connect
from redisq.backend.embedded import RedisServer, find_server_binary, free_port
from tests.integration.test_tls import make_ca_and_cert, openssl
from tests.support.tls import TLSFront, has_native_tls, tls_redis
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=1.0, connect_timeout_s=2.0)


def make_cert_for(d: Path, ca: str, name: str, san: str) -> None:
    """A certificate ``<name>.pem`` signed by ``<ca>-ca.pem`` for the names in ``san``."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}-ca.pem", "-CAkey", f"{ca}-ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    make_ca_and_cert(d, "good")  # good.pem: IP:127.0.0.1, DNS:localhost
    make_cert_for(d, "good", "wrong", "DNS:wrong.example")  # same CA, another host
    return d


@pytest.fixture
def wrong_host(certs: Path, tmp_path: Path) -> Iterator[int]:
    """A server whose certificate (signed by the trusted CA) names another host."""
    with tls_redis(tmp_path / "data", certs, "wrong") as port:
        yield port


def test_a_certificate_for_another_host_is_refused_by_default(certs: Path,
                                                              wrong_host: int) -> None:
    url = f"rediss://127.0.0.1:{wrong_host}/0?ssl_ca_certs={certs / 'good-ca.pem'}"
    kwargs = connect(url, "t", FAST).connection_pool.connection_kwargs
    assert kwargs["ssl_check_hostname"] is True  # explicit: redis-py 5 defaults to False
    with pytest.raises(redis.ConnectionError, match=r"(?i)hostname|match"):
        connect(url, "t", FAST).ping()
    # The URL can turn the check off (a certificate naming an internal name only, say).
    assert connect(url + "&ssl_check_hostname=false", "t", FAST).ping()


def test_asyncio_client_checks_hostnames_too(certs: Path, wrong_host: int) -> None:
    url = f"rediss://127.0.0.1:{wrong_host}/0?ssl_ca_certs={certs / 'good-ca.pem'}"

    async def ping(u: str) -> bool:
        client = async_client(u, FAST, 2)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    kwargs = async_client(url, FAST, 2).connection_pool.connection_kwargs
    assert kwargs["ssl_check_hostname"] is True  # explicit, whatever redis-py's default
    with pytest.raises(redis.ConnectionError):
        asyncio.run(ping(url))
    assert asyncio.run(ping(url + "&ssl_check_hostname=false"))


@pytest.fixture
def good_server(certs: Path, tmp_path: Path) -> Iterator[int]:
    with tls_redis(tmp_path / "data", certs, "good") as port:
        yield port


def test_ca_directory_from_the_url(certs: Path, good_server: int, tmp_path: Path) -> None:
    """``ssl_ca_path`` (a hashed CA directory, as /etc/ssl/certs) reaches the connection."""
    ca_dir = tmp_path / "cas"
    ca_dir.mkdir()
    (ca_dir / "good-ca.pem").write_bytes((certs / "good-ca.pem").read_bytes())
    openssl("rehash", str(ca_dir), cwd=tmp_path)
    assert connect(f"rediss://127.0.0.1:{good_server}/0?ssl_ca_path={ca_dir}", "t", FAST).ping()


def test_no_certificate_check_is_logged(good_server: int,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """``ssl_cert_reqs=none`` still connects (no CA given at all) but says so at WARNING,
    naming the URL without its password."""
    url = f"rediss://default:hunter2@127.0.0.1:{good_server}/0?ssl_cert_reqs=none"
    with caplog.at_level(logging.WARNING, logger="redisq.connection"):
        app = App(url)
        assert app.client.ping()
        app.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ssl_cert_reqs=none" in w and f"127.0.0.1:{good_server}" in w for w in warnings)
    assert not any("hunter2" in w for w in warnings)


def _sentinel_conf(d: Path, port: int, master_port: int, native: bool) -> str:
    if native:  # the sentinel speaks TLS only, its own links to the master too
        tls = [f"tls-port {port}", "port 0", f"tls-cert-file {d / 'good.pem'}",
               f"tls-key-file {d / 'good.key'}", f"tls-ca-cert-file {d / 'good-ca.pem'}",
               "tls-auth-clients no", "tls-replication yes"]
    else:  # plain, behind a TLS front; its links to the master go through the master's
        tls = [f"port {port}"]
    return "\n".join([*tls, "bind 127.0.0.1", "daemonize no", "sentinel resolve-hostnames no",
                      f"sentinel monitor mymaster 127.0.0.1 {master_port} 1"]) + "\n"


@contextlib.contextmanager
def _master(certs: Path, tmp_path: Path) -> Iterator[int]:
    """The master, on the port the sentinel monitors and reports: TLS only when the binary
    has TLS; else a plain master behind a front that also lets the (plain) sentinel in."""
    if has_native_tls():
        with tls_redis(tmp_path / "master", certs, "good") as port:
            yield port
        return
    master = RedisServer(tmp_path / "master", port=free_port()).start()
    front = TLSFront(master.port or 0, certs / "good.pem", certs / "good.key", plain_too=True)
    try:
        yield front.port
    finally:
        front.close()
        master.kill()


@pytest.fixture
def tls_sentinel(certs: Path, tmp_path: Path) -> Iterator[str]:
    """A master and a sentinel that clients reach over TLS only (no plaintext port to fall
    back to; without native TLS, through tests/support/tls.py's fronts)."""
    native = has_native_tls()
    with contextlib.ExitStack() as stack:
        master_port = stack.enter_context(_master(certs, tmp_path))
        port = free_port()
        own = port if native else free_port()  # the sentinel's own port (plain: behind a front)
        conf = tmp_path / "sentinel.conf"
        conf.write_text(_sentinel_conf(certs, own, master_port, native))
        proc = subprocess.Popen([find_server_binary(), str(conf), "--sentinel", "--logfile",
                                 str(tmp_path / "sentinel.log")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        stack.callback(lambda: (proc.kill(), proc.wait(5)))
        if not native:
            stack.callback(TLSFront(own, certs / "good.pem", certs / "good.key", port).close)
        admin = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs / "good-ca.pem"),
                            socket_timeout=1)
        stack.callback(admin.close)

        def knows_master() -> bool:
            try:
                return admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")[
                    1] == str(master_port).encode()
            except (redis.RedisError, OSError, TypeError):
                return False

        wait_until(knows_master, 5, interval_s=0.05, what="the TLS sentinel to answer")
        yield f"127.0.0.1:{port}"


def test_sentinel_over_tls(certs: Path, tls_sentinel: str) -> None:
    url = f"rediss+sentinel://{tls_sentinel}/mymaster/0?ssl_ca_certs={certs / 'good-ca.pem'}"
    app = App(url, options=FAST)
    app.client.set("over", "tls")
    assert app.client.get("over") == b"tls"

    async def via_asyncio() -> bytes:
        client = async_client(url, FAST, 2)
        try:
            return await client.get("over")  # type: ignore[no-any-return]
        finally:
            await client.aclose()

    assert asyncio.run(via_asyncio()) == b"tls"
    app.close()
