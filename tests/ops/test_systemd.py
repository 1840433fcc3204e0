"""The systemd units verify cleanly and agree with the daemon's own timings."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redisq.config import Settings

UNITS = Path(__file__).resolve().parents[2] / "systemd"
BIN = str(Path(sys.executable).parent) + "/"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/system-deps.sh)")
    # The units run /opt/redisq/.venv/bin/...; verify checks the binaries exist, so point them
    # at this checkout's venv. Nothing else is changed.
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".target"):
            text = path.read_text().replace("/opt/redisq/.venv/bin/", BIN)
            (tmp_path / path.name).write_text(text)
    (tmp_path / "redisq-worker@prodcons-1.service").write_text(
        (tmp_path / "redisq-worker@.service").read_text())
    names = ["redisq-web.service", "redisq-scheduler.service",
             "redisq-worker@prodcons-1.service", "redisq.target"]
    res = subprocess.run([analyze, "verify", "--man=no", *names], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    if "Failed to initialize" in res.stderr or "Operation not permitted" in res.stderr:
        pytest.skip(f"systemd-analyze cannot run in this sandbox: {res.stderr.strip()}")
    problems = [line for line in res.stderr.splitlines() if "/tmp" in line or "redisq" in line]
    assert res.returncode == 0 and not problems, res.stderr


def test_stop_timeout_covers_the_grace_period() -> None:
    worker = unit("redisq-worker@.service")["Service"]
    stop_s = float(worker["TimeoutStopSec"])
    assert stop_s > Settings.grace_s + Settings.block_timeout_s
    assert worker["KillSignal"] == "SIGTERM" and worker["Type"] == "notify"


def test_watchdog_exceeds_the_loop_bound() -> None:
    # Daemon.progressing(): an iteration is bounded by 2 blocking waits + backoff cap + 5 s.
    bound_s = Settings.block_timeout_s * 2 + 5.0 + 5.0
    for name in ("redisq-worker@.service", "redisq-scheduler.service"):
        assert float(unit(name)["Service"]["WatchdogSec"]) > bound_s


def test_hardening_everywhere() -> None:
    for name in ("redisq-worker@.service", "redisq-web.service", "redisq-scheduler.service"):
        service = unit(name)["Service"]
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("CapabilityBoundingSet", "")):
            assert service.get(key) == value, f"{name}: {key}"
        assert service.get("DynamicUser") == "yes" or service.get("User")


def test_every_directive_is_commented() -> None:
    """Each directive line of the worker unit follows a comment explaining it (or shares the
    comment of the group it belongs to)."""
    lines = (UNITS / "redisq-worker@.service").read_text().splitlines()
    comments = sum(1 for line in lines if line.startswith("#"))
    directives = sum(1 for line in lines if "=" in line and not line.startswith("#"))
    assert comments >= directives // 2
