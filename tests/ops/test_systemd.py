"""The systemd units: `systemd-analyze verify` and `security` accept them as installed, every
directive says why it is there, and their timings agree with the daemon's own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from redisq.backend.connection import ConnectionOptions, Outage
from redisq.config import Settings
from redisq.ops.instance import mode_of
from redisq.worker.daemon import SUPERVISOR_TICK_S, Daemon
from tests.ops import units
from tests.ops.units import ALL, SERVICES

# Instances as installed from systemd/: the template's default one and the docs' examples.
INSTANCES = ("redisq-worker@prodcons-1.service", "redisq-worker@pubsub-1.service")
VERIFIED = ("redisq-web.service", "redisq-scheduler.service", *INSTANCES, "redisq.target")
MAX_EXPOSURE = 2.5  # systemd-analyze security: 0 (locked down) .. 10 (exposed); ours is 1.7


def analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:  # scripts/system-deps.sh installs it: its absence is a broken setup
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/system-deps.sh)")
    return binary


def run_analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([analyze(), *args, f"--root={root}"], capture_output=True, text=True,
                         timeout=8)
    if "Failed to initialize" in res.stderr or "Operation not permitted" in res.stderr:
        # Only a sandbox that forbids what systemd-analyze needs ends up here: say so loudly.
        pytest.skip(f"systemd-analyze cannot run in this sandbox: {res.stderr.strip()}")
    return res


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verify the units unchanged (same /opt/redisq paths) in a throwaway root with stub
    executables: no systemd as PID 1 is needed, and nothing on this machine is touched."""
    units.make_root(tmp_path)
    res = run_analyze(tmp_path, "verify", "--man=no", *VERIFIED)
    # Unknown keys and bad values are only warnings (exit 0) for systemd: any line is a failure.
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_verify_catches_mistakes_here(tmp_path: Path) -> None:
    """The control: in this environment verify does flag a typo'd key, a bad value and a
    missing executable (so the clean result above means something)."""
    unit_dir = units.make_root(tmp_path)
    broken = (unit_dir / "redisq-web.service").read_text()
    broken = broken.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    broken = broken.replace("TimeoutStopSec=20", "TimeoutStopSec=twenty")
    broken = broken.replace("/opt/redisq/.venv/bin/gunicorn", "/opt/redisq/.venv/bin/nothing")
    (unit_dir / "redisq-web.service").write_text(broken)
    res = run_analyze(tmp_path, "verify", "--man=no", "redisq-web.service")
    assert "Unknown key 'NoNewPrivilege'" in res.stderr
    assert "Failed to parse time value, ignoring: twenty" in res.stderr
    assert "/opt/redisq/.venv/bin/nothing is not executable" in res.stderr and res.returncode


@pytest.mark.parametrize("name", ["redisq-web.service", "redisq-scheduler.service", INSTANCES[0]])
def test_security_exposure(tmp_path: Path, name: str) -> None:
    units.make_root(tmp_path)
    res = run_analyze(tmp_path, "security", "--offline=yes", "--no-pager", name)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", res.stdout + res.stderr)
    assert found, res.stdout + res.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, res.stdout


@pytest.mark.parametrize("name", ALL)
def test_every_directive_says_why(name: str) -> None:
    """A directive has its own comment right above it, or belongs to a run of directives
    under one comment that names each of them."""
    run: list[units.Directive] = []
    for directive in units.parse(name):
        if directive.comments:
            run = [directive]
            continue
        run.append(directive)
        head = run[0]
        assert head.comments, f"{name}:{directive.line}: {directive.key}= has no comment"
        assert directive.key in " ".join(head.comments), (
            f"{name}:{directive.line}: {directive.key}= shares the comment above line "
            f"{head.line} but is not named in it")


@pytest.mark.parametrize("name", SERVICES)
def test_hardening(name: str) -> None:
    for key, expected in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                          ("CapabilityBoundingSet", ""), ("DynamicUser", "yes"),
                          ("User", "redisq-web" if name == "redisq-web.service" else "redisq"),
                          ("KillSignal", "SIGTERM"),
                          ("Restart", "on-failure")):
        assert units.value(name, key) == expected, f"{name}: {key}"
    assert units.values(name, "ReadWritePaths") == []  # none of them writes to disk
    assert units.value(name, "StartLimitBurst", "Unit")
    assert units.value(name, "PartOf", "Unit") == "redisq.target"
    assert units.value(name, "WantedBy", "Install") == "redisq.target"
    assert "/etc/redisq/redisq.env" in units.values(name, "EnvironmentFile")
    assert all(p.startswith(units.INSTALL_PREFIX) for p in units.executables(name))


def test_stop_timeout_covers_the_grace_period() -> None:
    """systemd must not SIGKILL a clean stop: a blocking wait in flight (its socket deadline),
    then the grace period, then a few round trips to give the rest back."""
    stop_s = units.seconds(units.value("redisq-worker@.service", "TimeoutStopSec"))
    defaults = Settings()
    in_flight_s = defaults.block_timeout_s + ConnectionOptions().read_margin_s
    assert stop_s >= in_flight_s + defaults.grace_s + 5.0
    assert units.value("redisq-worker@.service", "Type") == "notify"
    assert units.value("redisq-worker@.service", "NotifyAccess") == "main"


def loop_bound_s(settings: Settings) -> float:
    """The longest gap between loop iterations that Daemon.progressing() still calls alive,
    found by asking it (so a change to its formula is seen here)."""
    now = [0.0]
    daemon = SimpleNamespace(settings=settings, outage=Outage("probe"), clock=lambda: now[0],
                             _loop_mono=0.0)
    low, high = 0.0, 3600.0
    assert Daemon.progressing(daemon)  # type: ignore[arg-type]
    for _ in range(50):
        now[0] = (low + high) / 2
        low, high = (now[0], high) if Daemon.progressing(daemon) else (low, now[0])  # type: ignore[arg-type]
    return low


@pytest.mark.parametrize("name", ["redisq-worker@.service", "redisq-scheduler.service"])
def test_watchdog_fits_the_loop_bound(name: str) -> None:
    """WATCHDOG=1 is sent only while the loop progresses; after READY=1 the first iteration
    (e.g. after a long wait for Redis) may take the whole bound before it is, so the watchdog
    must outlast that bound plus a supervisor tick, and the supervisor's ping interval
    (WatchdogSec / 2, from WATCHDOG_USEC) must leave room for a late tick."""
    watchdog_s = units.seconds(units.value(name, "WatchdogSec"))
    bound_s = loop_bound_s(Settings())
    assert 16.0 < bound_s < 18.0  # 2 x 5 s blocking + 2 s backoff cap + 5 s, as the units say
    assert watchdog_s > bound_s + SUPERVISOR_TICK_S
    assert watchdog_s / 2 + SUPERVISOR_TICK_S < watchdog_s
    assert str(round(bound_s)) + " s" in " ".join(
        d for c in units.parse(name) if c.key == "WatchdogSec" for d in c.comments)


def test_template_instances_pick_their_mode() -> None:
    """The instance names the units and docs use map to the mode they claim."""
    default = units.value("redisq-worker@.service", "DefaultInstance", "Install")
    assert mode_of(default) == "prodcons"
    assert [mode_of(i.split("@")[1].removesuffix(".service")) for i in INSTANCES] == [
        "prodcons", "pubsub"]
    assert "-m redisq.ops.instance %i" in units.value("redisq-worker@.service", "ExecStart")
    # The probe checks the id the worker registers under (an env file may change it).
    assert "REDISQ_WORKER_ID=%H-%i" in units.values("redisq-worker@.service", "Environment")
    assert "--worker-id ${REDISQ_WORKER_ID}" in units.value("redisq-worker@.service",
                                                          "ExecStartPost")
