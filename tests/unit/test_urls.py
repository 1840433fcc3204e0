"""Which Redis URL is used when none is given (never a silently started server), passwords
never shown, and the CLI's import path. Nothing here dials a server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from redisq import App
from redisq.backend import embedded as server
from redisq.backend import urls
from redisq.backend.connection import connect, resolve_url
from redisq.errors import ConfigError
from redisq.ops.cli import load_app, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No URL in the environment; starting the embedded server is recorded, not done."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDISQ_URL", raising=False)
    started: list[str] = []

    def fake_ensure_server(data_dir: object = None) -> SimpleNamespace:
        started.append("embedded")
        return SimpleNamespace(url="unix:///tmp/embedded-test.sock")

    monkeypatch.setattr(server, "ensure_server", fake_ensure_server)
    return started


def test_no_url_is_the_local_default_in_a_fresh_process(tmp_path: Path) -> None:
    """As every peer: App() with no URL anywhere is redis://127.0.0.1:6379/0, and making it
    (and asking its URL) starts nothing and writes nothing in the current directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDISQ_URL")}
    env["PYTHONPATH"] = str(ROOT)
    code = "from redisq import App; print(App().url)"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=9)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "redis://127.0.0.1:6379/0"
    assert list(tmp_path.iterdir()) == []  # no .redisq data directory


def test_no_url_never_starts_the_embedded_server(no_env_url: list[str]) -> None:
    assert resolve_url(None) == urls.DEFAULT_URL
    assert App().url == urls.DEFAULT_URL
    connect(None, "t").close()  # lazy: builds a client, dials nothing
    assert no_env_url == []


def test_embedded_only_when_asked_for(no_env_url: list[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert App("embedded").url == "unix:///tmp/embedded-test.sock"
    assert no_env_url == ["embedded"]
    monkeypatch.setenv("REDISQ_URL", "embedded")
    assert App().url == "unix:///tmp/embedded-test.sock"
    assert no_env_url == ["embedded", "embedded"]


def test_url_precedence(no_env_url: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://plain-env:1/0")
    assert App().url == "redis://plain-env:1/0"
    monkeypatch.setenv("REDISQ_URL", "redis://redisq-env:1/0")
    assert App().url == "redis://redisq-env:1/0"
    assert App("redis://explicit:1/0").url == "redis://explicit:1/0"


@pytest.mark.parametrize("command", [["info"], ["job", "nope"],
                                     ["enqueue", "some.task", "--args", "[1]"]])
def test_cli_without_a_url_uses_the_default(no_env_url: list[str], command: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`redisq info/job/enqueue` with no URL go to the default URL (here a closed port, so
    they fail: exit 1, Connection refused) instead of starting a private server."""
    monkeypatch.setattr(urls, "DEFAULT_URL", "redis://127.0.0.1:1/0")
    res = CliRunner().invoke(main, command, env={"REDIS_URL": None, "REDISQ_URL": None})
    assert res.exit_code == 1 and "127.0.0.1:1" in res.output, res.output
    assert no_env_url == []


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://user:s3cret@host:6380/0?ssl_ca_certs=/ca.pem",
     "rediss://user:***@host:6380/0?ssl_ca_certs=/ca.pem"),
    ("redis+sentinel://u:p%40ss@s1:26379,s2:26379/mymaster/0",
     "redis+sentinel://u:***@s1:26379,s2:26379/mymaster/0"),
    ("unix://:pw@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("redis://user@host:6379/0", "redis://user@host:6379/0"),
    ("embedded", "embedded"),
])
def test_redact(url: str, shown: str) -> None:
    assert urls.redact(url) == shown


def test_unsupported_scheme_error_hides_the_password() -> None:
    with pytest.raises(ConfigError, match="unsupported") as info:
        connect("http://user:hunter2@127.0.0.1:1/", "t")
    assert "hunter2" not in str(info.value) and "user:***@" in str(info.value)


def test_cli_errors_hide_the_password() -> None:
    res = CliRunner().invoke(main, ["info", "--url", "http://user:hunter2@127.0.0.1:1/"])
    assert res.exit_code == 2 and "hunter2" not in res.output and "***" in res.output


def test_load_app_searches_the_current_directory_last(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in the current directory named like a module the app imports must not replace
    that module: the directory is appended to sys.path, not put first."""
    installed, cwd = tmp_path / "site", tmp_path / "cwd"
    installed.mkdir()
    cwd.mkdir()
    (installed / "rq_probe_dep.py").write_text("WHO = 'installed'\n")
    (cwd / "rq_probe_dep.py").write_text("WHO = 'shadow from the current directory'\n")
    (cwd / "rq_probe_app.py").write_text(
        "import rq_probe_dep\nfrom redisq import App\napp = App('redis://127.0.0.1:1/0')\n"
        "app.dep = rq_probe_dep.WHO\n")
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(cwd))]
                        + [str(installed)])
    for name in ("rq_probe_dep", "rq_probe_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    app = load_app("rq_probe_app:app", None)
    assert app.dep == "installed"  # type: ignore[attr-defined]
    assert sys.path[-1] == str(cwd) and sys.path[0] != str(cwd)


def test_tls_options_reach_every_kind_of_client() -> None:
    """One parser for the TLS options of rediss://, rediss+cluster:// and rediss+sentinel://
    (the sentinels' own connections included); hostname checking explicit and on."""
    query = "ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/c.key&ssl_ca_path=/cas"
    expected = {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/c.key",
                "ssl_ca_path": "/cas", "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    plain = connect(f"rediss://127.0.0.1:1/0?{query}&protocol=2", "t")
    kwargs = plain.connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in expected} == expected
    assert kwargs["protocol"] == 2  # the other options still reach redis-py
    sentinel = connect(f"rediss+sentinel://127.0.0.1:1/mymaster/0?{query}", "t")
    kwargs = sentinel.connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in expected} == expected
    to_sentinels = sentinel.connection_pool.sentinel_manager.sentinels[0]  # type: ignore[attr-defined]
    kwargs = to_sentinels.connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in expected} == expected
    off = connect("rediss://127.0.0.1:1/0?ssl_check_hostname=false", "t")
    assert off.connection_pool.connection_kwargs["ssl_check_hostname"] is False
    with pytest.raises(ConfigError, match="ssl_cert_reqs"):
        connect("rediss://127.0.0.1:1/0?ssl_cert_reqs=maybe", "t")
    with pytest.raises(ConfigError, match="ssl_check_hostname"):
        connect("rediss://127.0.0.1:1/0?ssl_check_hostname=perhaps", "t")


def test_plain_sentinel_urls_stay_plain() -> None:
    client = connect("redis+sentinel://127.0.0.1:1/mymaster/0", "t")
    to_sentinels = client.connection_pool.sentinel_manager.sentinels[0]  # type: ignore[attr-defined]
    assert "ssl_ca_certs" not in to_sentinels.connection_pool.connection_kwargs


def test_cert_reqs_none_turns_hostname_checking_off_and_warns(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="redisq.connection"):
        client = connect("rediss://u:pw123@127.0.0.1:2/0?ssl_cert_reqs=none", "t")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["ssl_check_hostname"] is False
    assert any("ssl_cert_reqs=none" in r.getMessage() and "pw123" not in r.getMessage()
               for r in caplog.records)


def test_connection_errors_and_their_logs_hide_the_password(
        caplog: pytest.LogCaptureFixture) -> None:
    """A guard: redis-py's connection errors name host and port only, and so do redisq's
    outage log lines and the CLI's one-line error."""
    from redisq.backend.connection import Outage

    url = "redis://app:hunter2@127.0.0.1:1/0"
    with pytest.raises(Exception) as info:
        connect(url, "t").ping()
    with caplog.at_level("WARNING", logger="redisq.connection"):
        Outage("worker").failed(info.value, wait=False)
    assert caplog.records and all("hunter2" not in r.getMessage() for r in caplog.records)
    res = CliRunner().invoke(main, ["info", "--url", url])
    assert res.exit_code == 1 and "127.0.0.1:1" in res.output and "hunter2" not in res.output
