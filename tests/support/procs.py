"""Worker processes started through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_")}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=url, **extra)
    return env


def start_worker(url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m redisq worker --app tests.worker_app:app`` with test-fast timings."""
    cmd = [sys.executable, "-m", "redisq", "worker", "--app", "tests.worker_app:app",
           "--url", url, "--block-timeout-s", "0.5", "--lease-s", "1.5", "--log-level",
           "WARNING", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=cli_env(url, **env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def run_cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redisq", *args], cwd=ROOT,
                          env=cli_env(url, **env), capture_output=True, text=True, timeout=9)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
