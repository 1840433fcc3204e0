"""``redisq worker --processes N``: the supervisor and its children, as real processes against a
real server: a child killed mid-job is replaced and its jobs come back (each finishes once),
children are recycled after max jobs or memory, SIGTERM reaches every child, sd_notify speaks
for all of them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from redisq.backend.registry import Registry
from tests import supervisor_app
from tests.integration.test_worker_notify import NotifySocket
from tests.support.procs import ROOT, cli_env, run_cli, stop
from tests.support.wait import wait_until


def start(url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "redisq", "worker", "--app", "tests.supervisor_app:app",
           "--url", url, "--block-timeout-s", "0.5", "--lease-s", "1.5", "--log-level",
           "INFO", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=cli_env(url, **env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def use(url: str) -> redis.Redis:
    supervisor_app.app.use_url(url)
    supervisor_app.app.close()
    return supervisor_app.app.client


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def shutdown(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM the supervisor, wait for it, and return its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(8)
    finally:
        stop(proc)
    assert proc.stderr is not None
    return proc.stderr.read().decode()


def test_sigkill_child_mid_job_is_replaced_and_its_jobs_run_once(redis_url: str) -> None:
    r = use(redis_url)
    jobs = [supervisor_app.hold.delay(i) for i in range(4)]
    sup = start(redis_url, "--processes", "2", "--concurrency", "2")
    try:
        wait_until(lambda: r.hlen("starts") == 4, 6, what="4 jobs in flight")
        first = children(sup.pid)
        assert len(first) == 2
        victim = int(r.hget("started_by", "0") or 0)
        assert victim in first
        killed = {k for k, v in r.hgetall("started_by").items() if int(v) == victim}
        os.kill(victim, signal.SIGKILL)
        # A new child takes the dead one's place.
        wait_until(lambda: len(children(sup.pid) - first) == 1, 5, what="a new child")
        assert len(children(sup.pid)) == 2
        # The killed child's jobs come back once its lease runs out; the rest finish once.
        r.set("release", 1)
        assert [j.result(8) for j in jobs] == [0, 1, 2, 3]
        assert {int(v) for v in r.hvals("runs")} == {1}  # nothing lost, nothing doubled
        starts = {k: int(v) for k, v in r.hgetall("starts").items()}
        assert all(starts[k] == (2 if k in killed else 1) for k in starts)
        log = shutdown(sup)
        assert "died (killed by SIGKILL)" in log and "restarting in" in log
        assert sup.returncode == 0
    finally:
        stop(sup)


def test_child_is_recycled_after_max_jobs(redis_url: str) -> None:
    r = use(redis_url)
    supervisor_app.mark.map([((i,), {}) for i in range(20)])
    sup = start(redis_url, "--concurrency", "1", "--max-jobs-per-child", "5")
    try:
        wait_until(lambda: r.hlen("runs") == 20, 8, what="20 jobs")
        assert {int(v) for v in r.hvals("runs")} == {1}
        per_pid = [int(v) for v in r.hvals("by_pid")]
        assert len(per_pid) >= 4 and max(per_pid) <= 5  # a new process every 5 jobs
        log = shutdown(sup)
        assert "recycling after 5 jobs (max_jobs_per_child=5)" in log
        assert sup.returncode == 0
    finally:
        stop(sup)


def test_child_is_recycled_above_max_memory(redis_url: str) -> None:
    use(redis_url)
    sup = start(redis_url, "--max-memory-per-child-mb", "1")  # any Python process is above
    try:
        assert sup.stderr is not None
        wait_until(lambda: len(children(sup.pid)) == 1, 5, what="the first child")
        first = children(sup.pid)
        wait_until(lambda: children(sup.pid) and children(sup.pid) != first, 6,
                   what="its replacement")
        log = shutdown(sup)
        assert "recycling after RSS" in log and "max_memory_per_child_mb=1" in log
    finally:
        stop(sup)


def test_sigterm_reaches_every_child_and_running_jobs_finish(redis_url: str) -> None:
    r = use(redis_url)
    jobs = [supervisor_app.hold.delay(i) for i in range(2)]
    sup = start(redis_url, "--processes", "2", "--concurrency", "1", "--grace-s", "5")
    try:
        wait_until(lambda: r.hlen("starts") == 2, 6, what="both jobs running")
        kids = children(sup.pid)
        assert {int(v) for v in r.hvals("started_by")} == kids  # one job in each child
        sup.send_signal(signal.SIGTERM)
        wait_until(lambda: all(j.status == "started" for j in jobs), 1, what="still running")
        r.set("release", 1)  # within the grace period: they finish, nothing is given back
        assert sup.wait(8) == 0
        assert [j.status for j in jobs] == ["succeeded", "succeeded"]
        assert not any(Path(f"/proc/{k}").exists() for k in kids)
        assert not Registry(r).workers()  # each child unregistered
    finally:
        stop(sup)


def test_notify_ready_and_status_for_all_children(redis_url: str) -> None:
    use(redis_url)
    sock = NotifySocket()
    sup = start(redis_url, "--processes", "2", "--worker-id", "w", NOTIFY_SOCKET=sock.path)
    try:
        got = sock.wait_for("READY=1", 6)
        assert not any(g.startswith("READY") for g in got[:-1])
        status = [g for g in sock.received(1.0) + got if g.startswith("STATUS=")]
        assert any("2/2 worker processes (2 ready)" in s for s in status), status
        ids = sorted(w["id"] for w in Registry(use(redis_url)).workers())
        assert ids == ["w.0", "w.1"]
        # systemd's ExecStartPost probe names the unit's worker id: its children answer.
        probe = run_cli(redis_url, "health", "--worker-id", "w")
        assert probe.returncode == 0 and "2 worker(s) progressing" in probe.stdout
        assert run_cli(redis_url, "health", "--worker-id", "w.").returncode == 1
        sup.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.received(1.0)
        assert sup.wait(8) == 0
    finally:
        stop(sup)
        sock.close()


def test_processes_refused_in_pubsub_mode(redis_url: str) -> None:
    proc = start(redis_url, "--mode", "pubsub", "--processes", "2")
    assert proc.wait(8) == 2
    assert proc.stderr is not None
    assert b"prodcons" in proc.stderr.read()


def test_burst_ends_once_every_child_drained(redis_url: str) -> None:
    r = use(redis_url)
    supervisor_app.mark.map([((i,), {}) for i in range(50)])
    sup = start(redis_url, "--processes", "2", "--burst")
    try:
        assert sup.wait(8) == 0
        assert sup.stderr is not None
        log = sup.stderr.read().decode()
        # (A job's Redis call failing in a child is logged as "dead": the log says why.)
        assert r.hlen("runs") == 50 and {int(v) for v in r.hvals("runs")} == {1}, log
        assert "restarting" not in log and " dead " not in log, log
    finally:
        stop(sup)


def test_crash_loop_is_restarted_with_backoff(redis_url: str) -> None:
    use(redis_url)
    sup = start(redis_url, "--processes", "2", SUPERVISOR_TEST_CRASH="1")
    try:
        assert sup.stderr is not None
        log = b""
        deadline = time.monotonic() + 6
        while len(re.findall(rb"slot=0 pid=\d+ died", log)) < 2 and time.monotonic() < deadline:
            log += os.read(sup.stderr.fileno(), 65536)  # (blocks until the supervisor logs)
        text = log.decode()
        delays = [float(m) for m in re.findall(r"slot=0 pid=\d+ died \(exit code 1\) after "
                                               r"[\d.]+ s; restarting in ([\d.]+) s", text)]
        assert len(delays) >= 2, text
        assert all(0.25 <= d <= 30 for d in delays)  # jittered: [base/2, min(cap, base*2^n)]
        assert sup.poll() is None  # a crash loop does not end the supervisor
        sup.send_signal(signal.SIGTERM)
        # It stops at once, restarting nothing; 1: a child it stopped had failed (crashed).
        assert sup.wait(8) in (0, 1)
        rest = sup.stderr.read().decode()
        assert "stopping" in rest and "started worker process" not in rest.split("stopping")[1]
    finally:
        stop(sup)
