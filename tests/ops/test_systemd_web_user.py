"""The web unit is kept apart from the workers: its own dynamic user and its own environment
file, so the web token never reaches a worker's environment, nor the tasks it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops import emulate, units
from tests.ops.units import SERVICES, UNITS

WEB = "redisq-web.service"
OTHERS = tuple(s for s in SERVICES if s != WEB)
TOKEN = "a-long-random-test-token-0123456789"


def test_the_web_unit_has_a_user_of_its_own() -> None:
    web_user = units.value(WEB, "User")
    for name in OTHERS:
        assert units.value(name, "User") != web_user, name
    assert units.value(WEB, "DynamicUser") == "yes"
    # Other users' processes (and so their environment) are hidden from a task's code.
    assert units.value(WEB, "ProtectProc") == "invisible"


def test_only_the_web_unit_reads_the_web_env_file() -> None:
    assert "/etc/redisq/web.env" in units.values(WEB, "EnvironmentFile")  # required: no "-"
    for name in OTHERS:
        files = [f.lstrip("-") for f in units.values(name, "EnvironmentFile")]
        assert "/etc/redisq/web.env" not in files, name


def test_the_token_reaches_the_web_unit_only(tmp_path: Path) -> None:
    """The environments systemd would build from the files as the docs lay them out."""
    (tmp_path / "redisq.env").write_text("REDISQ_URL=redis://127.0.0.1:1/0\nREDISQ_APP=x:app\n")
    (tmp_path / "web.env").write_text(f"REDISQ_WEB_TOKEN={TOKEN}\n")
    web = emulate.Unit(WEB, tmp_path).environment()
    assert web["REDISQ_WEB_TOKEN"] == TOKEN and web["REDISQ_URL"] == "redis://127.0.0.1:1/0"
    for name in ("redisq-worker@prodcons-1.service", "redisq-worker@pubsub-1.service",
                 "redisq-scheduler.service"):
        env = emulate.Unit(name, tmp_path).environment()
        assert "REDISQ_WEB_TOKEN" not in env and env["REDISQ_APP"] == "x:app", name


def test_the_examples_put_the_token_in_the_web_file() -> None:
    shared = (UNITS / "redisq.env.example").read_text()
    web = (UNITS / "web.env.example").read_text()
    assert "#REDISQ_WEB_TOKEN=" in web and "#REDISQ_WEB_TOKEN=" not in shared
    assert "#REDISQ_URL=" in shared and "#REDISQ_URL=" not in web


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_worker_with_the_web_token_says_so(command: str) -> None:
    """Should the token land in a worker's environment anyway (the shared file), the worker
    warns at start."""
    res = subprocess.run([sys.executable, "-m", "redisq", command],
                         env={**emulate.base_environment(), "REDISQ_WEB_TOKEN": TOKEN},
                         cwd=emulate.ROOT, capture_output=True, text=True, timeout=9)
    assert res.returncode == 2  # no --app: a configuration error, after the warning
    assert "REDISQ_WEB_TOKEN is set" in res.stderr and TOKEN not in res.stderr
