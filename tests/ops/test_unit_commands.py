"""The units' command lines work as systemd would run them (tests/ops/emulate.py): each
service reaches READY=1 over NOTIFY_SOCKET, the worker's ExecStartPost= probe passes, the
instance name picks the mode, SIGTERM stops cleanly, and a configuration error exits 2 (which
RestartPreventExitStatus= keeps from restarting)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq.backend.embedded import free_port
from redisq.backend.registry import Registry
from tests.ops import emulate, units
from tests.support.wait import wait_until

FAST = {"REDISQ_BLOCK_TIMEOUT_S": "0.5", "REDISQ_LEASE_S": "2", "REDISQ_GRACE_S": "2",
        "REDISQ_LOG_LEVEL": "WARNING"}


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("# written by the test\n" + "".join(f"{k}={v}\n" for k, v in values.items()))


@pytest.fixture
def etc(tmp_path: Path, redis_url: str) -> Path:
    """/etc/redisq with the shared redisq.env (the test server, the test app, fast timings)."""
    write_env(tmp_path / "redisq.env",
              {"REDISQ_URL": redis_url, "REDISQ_APP": "tests.worker_app:app", **FAST})
    return tmp_path


@pytest.fixture
def listener() -> Iterator[emulate.NotifyListener]:
    sock = emulate.NotifyListener()
    yield sock
    sock.close()


def stop_cleanly(proc: subprocess.Popen[str], name: str,
                 listener: emulate.NotifyListener | None = None) -> None:
    """KillSignal= and an exit 0 well within TimeoutStopSec= (and STOPPING=1 when a
    ``listener`` is given: redisq's daemons announce it, gunicorn does not)."""
    proc.send_signal(getattr(signal, units.value(name, "KillSignal")))
    try:
        code = proc.wait(min(units.seconds(units.value(name, "TimeoutStopSec")), 6))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read() if proc.stderr else code
    if listener is not None:
        listener.wait_for("STOPPING=1", 1)


@pytest.mark.parametrize("instance", ["pubsub-1", "prodcons-1"])
def test_worker_instance(etc: Path, listener: emulate.NotifyListener, real_redis: redis.Redis,
                         instance: str) -> None:
    unit = emulate.Unit(f"redisq-worker@{instance}.service", etc)
    if instance == "prodcons-1":  # the per-instance file: its settings reach the worker
        write_env(etc / f"worker-{instance}.env", {"REDISQ_QUEUES": "high,default"})
    env = unit.environment(**emulate.base_environment())
    proc = emulate.start(unit, env, listener, watchdog_s=1.0)
    try:
        listener.wait_for("READY=1", 6)
        probe = emulate.run(unit, "ExecStartPost", env)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        (entry,) = Registry(real_redis).workers()
        assert entry["id"] == f"{emulate.HOST}-{instance}"
        assert entry["mode"] == instance.split("-")[0]
        if instance == "prodcons-1":
            assert entry["queues"] == ["high", "default"]
        listener.wait_for("WATCHDOG=1", 2)  # fed by the loop (WATCHDOG_USEC = 1 s)
        stop_cleanly(proc, unit.file, listener)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_instance_name_contradicting_the_env_file_exits_2(etc: Path,
                                                          listener: emulate.NotifyListener) -> None:
    write_env(etc / "worker-pubsub-1.env", {"REDISQ_MODE": "prodcons"})
    unit = emulate.Unit("redisq-worker@pubsub-1.service", etc)
    proc = emulate.start(unit, unit.environment(**emulate.base_environment()), listener)
    _, err = proc.communicate(timeout=8)
    assert proc.returncode == 2 and "names mode 'pubsub'" in err
    assert units.value(unit.file, "RestartPreventExitStatus") == "2"
    assert listener.seen == []  # never claimed to be ready


def test_misspelt_setting_exits_2(etc: Path, listener: emulate.NotifyListener) -> None:
    write_env(etc / "worker-prodcons-1.env", {"REDISQ_CONCURENCY": "4"})
    unit = emulate.Unit("redisq-worker@prodcons-1.service", etc)
    proc = emulate.start(unit, unit.environment(**emulate.base_environment()), listener)
    _, err = proc.communicate(timeout=8)
    assert proc.returncode == 2 and "unknown setting REDISQ_CONCURENCY" in err


def test_scheduler_unit(etc: Path, listener: emulate.NotifyListener) -> None:
    env_file = emulate.read_env_file(etc / "redisq.env")
    write_env(etc / "redisq.env", {**env_file, "REDISQ_APP": "tests.sched_app:app"})
    unit = emulate.Unit("redisq-scheduler.service", etc)
    proc = emulate.start(unit, unit.environment(**emulate.base_environment()), listener,
                         watchdog_s=1.0)
    try:
        listener.wait_for("READY=1", 6)
        listener.wait_for("WATCHDOG=1", 2)
        stop_cleanly(proc, unit.file, listener)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_web_unit(etc: Path, listener: emulate.NotifyListener) -> None:
    """gunicorn as the unit starts it: READY=1 from its master, then /healthz answers on
    REDISQ_WEB_HOST:REDISQ_WEB_PORT from the web unit's own environment file."""
    port = free_port()
    write_env(etc / "web.env", {"REDISQ_WEB_PORT": str(port),
                                "REDISQ_WEB_TOKEN": "a-long-random-test-token-0123456789"})
    unit = emulate.Unit("redisq-web.service", etc)
    proc = emulate.start(unit, unit.environment(**emulate.base_environment()), listener)
    try:
        listener.wait_for("READY=1", 6)

        def healthz() -> dict[str, object] | None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except urllib.error.HTTPError as exc:  # 503: no worker alive, still a JSON answer
                return json.loads(exc.read())  # type: ignore[no-any-return]
            except (urllib.error.URLError, OSError):
                return None  # READY=1 comes from the master: its workers may still be booting
            return {"ok": True}

        assert wait_until(healthz, 6, interval_s=0.1, what="/healthz")
        stop_cleanly(proc, unit.file)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
