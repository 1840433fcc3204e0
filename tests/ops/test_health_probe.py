"""`redisq health` as a probe (systemd ExecStartPost=, a container or monitoring check): when
Redis is down, stopped or hung it exits 1 within a few seconds, and it never starts a server
of its own. Its exit codes with live and stale workers are in tests/integration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from redisq.backend.embedded import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROBE_BUDGET_S = 5.0  # interpreter start (~1 s here) + the 2 s default --timeout-s, with room


def probe(*args: str, cwd: Path = ROOT, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_") and k != "REDIS_URL"}
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "redisq", "health", *args], cwd=cwd,
                         env={**clean, "PYTHONPATH": str(ROOT), **env}, capture_output=True,
                         text=True, timeout=9)
    return res, time.monotonic() - started


def test_stopped_server_fails_fast(server: RedisServer) -> None:
    ok, _ = probe(REDISQ_URL=server.url)  # the URL from the environment, as in the units
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    server.stop()
    res, took = probe(REDISQ_URL=server.url)
    assert res.returncode == 1 and "Connection refused" in res.stderr
    assert took < PROBE_BUDGET_S


def test_hung_server_fails_within_the_timeout(server: RedisServer) -> None:
    """A SIGSTOPped server accepts connections and never answers: only a deadline helps
    (without one the probe waited for the 7 s socket deadline of a worker connection)."""
    server.pause()
    res, took = probe("--url", server.url, "--timeout-s", "1")
    assert res.returncode == 1 and "Timeout" in res.stderr, res.stderr
    assert 1.0 <= took < PROBE_BUDGET_S


def test_embedded_url_does_not_start_a_server(tmp_path: Path) -> None:
    """With REDISQ_URL=embedded it checks the embedded server's socket, and fails when none
    runs, instead of starting one and reporting on it. (Without any URL it would check
    redis://127.0.0.1:6379/0, as the workers would use: never reached from the tests.)"""
    res, took = probe(cwd=tmp_path, REDISQ_DATA_DIR=str(tmp_path / "data"), REDISQ_URL="embedded")
    assert res.returncode == 1 and "redis.sock" in res.stderr, res.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / ".redisq").exists()
    assert took < PROBE_BUDGET_S


def test_embedded_url_checks_a_running_embedded_server(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "data").start()  # unix socket, as `redisq server` runs it
    try:
        res, _ = probe(cwd=tmp_path, REDISQ_DATA_DIR=str(tmp_path / "data"), REDISQ_URL="embedded")
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        srv.stop()


def test_bad_configuration_exits_2() -> None:
    res, _ = probe(REDISQ_HEALTH_MAX_AGE_S="soon")
    assert res.returncode == 2 and "health_max_age_s" in res.stderr
