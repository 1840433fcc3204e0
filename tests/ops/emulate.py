"""Run a unit's commands the way systemd would, without systemd: its Environment= and
EnvironmentFile= lines (specifiers expanded, files taken from a fake /etc/redisq), its
WorkingDirectory, its Exec*= lines with ``${VAR}`` substituted, and a NOTIFY_SOCKET to listen
on. The only change is the install prefix: /opt/redisq/.venv/bin is this test venv's bin, and
/opt/redisq is this checkout."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.ops import units

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent) + "/"
HOST = socket.gethostname()


class Unit:
    """One unit (``name`` as systemd would load it, e.g. ``redisq-worker@pubsub-1.service``)
    with its environment files in ``etc`` (standing for /etc/redisq)."""

    def __init__(self, name: str, etc: Path) -> None:
        self.name = name
        prefix, _, rest = name.partition("@")
        self.instance = rest.removesuffix(".service") if rest else ""
        self.file = f"{prefix}@.service" if rest else name
        self.etc = etc

    def expand(self, text: str) -> str:
        """systemd's specifiers used by our units: %i (instance), %H (host), %%."""
        return re.sub(r"%[iH%]", lambda m: {"%i": self.instance, "%H": HOST, "%%": "%"}[m.group()],
                      text)

    def environment(self, **base: str) -> dict[str, str]:
        """Environment= lines, then EnvironmentFile= files (which override them), over ``base``."""
        env = dict(base)
        for assignment in units.values(self.file, "Environment"):
            for word in shlex.split(self.expand(assignment)):
                key, _, value = word.partition("=")
                env[key] = value
        for spec in units.values(self.file, "EnvironmentFile"):
            optional, path = spec.startswith("-"), self.expand(spec.lstrip("-"))
            assert path.startswith("/etc/redisq/"), path
            local = self.etc / path.removeprefix("/etc/redisq/")
            if not local.exists():
                assert optional, f"{self.name}: {path} is required"
                continue
            env.update(read_env_file(local))
        return env

    def command(self, key: str, env: dict[str, str]) -> list[str]:
        """The argv of an Exec*= line, ``${VAR}`` substituted, the install prefix mapped."""
        line = self.expand(units.value(self.file, key))
        line = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), line)
        assert "$" not in line, f"unsupported substitution in {line!r}"
        return [w.replace(units.INSTALL_PREFIX, BIN) for w in shlex.split(line)]

    def cwd(self) -> Path:
        directory = units.value(self.file, "WorkingDirectory")
        assert directory == "/opt/redisq", directory
        return ROOT


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#``/``;`` comments and blank lines skipped (as systemd does)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("\"'")
    return out


def base_environment() -> dict[str, str]:
    """What systemd passes besides the unit's own settings (no ambient REDISQ_*/REDIS_URL)."""
    keep = ("PATH", "LANG", "HOME")
    return {k: os.environ[k] for k in keep if k in os.environ}


class NotifyListener:
    """The datagram socket systemd listens on for READY=1, WATCHDOG=1, STOPPING=1."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="rq-unit-")  # AF_UNIX paths must stay short
        self.path = str(Path(self.dir) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.seen: list[str] = []

    def wait_for(self, state: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.seen += self.sock.recv(512).decode().splitlines()
            if state in self.seen:
                return
        raise AssertionError(f"no {state} within {timeout_s} s (got {self.seen})")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def start(unit: Unit, env: dict[str, str], listener: NotifyListener,
          watchdog_s: float | None = None) -> subprocess.Popen[str]:
    """ExecStart= as the main process, with NOTIFY_SOCKET (and WATCHDOG_USEC) set."""
    extra = {"NOTIFY_SOCKET": listener.path}
    if watchdog_s:
        extra["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
    return subprocess.Popen(unit.command("ExecStart", env), cwd=unit.cwd(), env={**env, **extra},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(unit: Unit, key: str, env: dict[str, str], timeout_s: float = 8.0
        ) -> subprocess.CompletedProcess[str]:
    """A one-shot Exec*= line (ExecStartPost=) to completion."""
    return subprocess.run(unit.command(key, env), cwd=unit.cwd(), env=env, capture_output=True,
                          text=True, timeout=timeout_s)
