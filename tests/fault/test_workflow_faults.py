"""Workflows across real worker processes, a SIGKILLed worker and a crashed Redis (AOF, fsync
always): a chord's callback runs exactly once with every result, a chain completes in order.
Runs are counted from a file the tasks append to (tests/support/wf_app.py), not from Redis."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from redisq import App, chain, group
from redisq.backend import keys
from redisq.backend.embedded import RedisServer
from tests.support.procs import start_worker, stop
from tests.support.wait import wait_until
from tests.support.wf_app import read_log

pytestmark = pytest.mark.slow
MEMBERS = 200


def workers(url: str, runs: Path, n: int) -> list[subprocess.Popen[bytes]]:
    return [start_worker(url, "--app", "tests.support.wf_app:app", "--worker-id", f"w{i}",
                         "--concurrency", "3", RUNS_FILE=str(runs)) for i in range(n)]


def drained(server: RedisServer, ids: list[str]) -> bool:
    """Nothing waiting, delayed or held by any worker of the default queue."""
    admin = server.client()
    try:
        held = sum(admin.llen(keys.processing("default", w)) for w in ids)
        return (admin.llen(keys.pending("default")) == 0 and held == 0
                and admin.zcard(keys.delayed("default")) == 0)
    finally:
        admin.close()


def test_chord_of_200_runs_its_callback_once_across_a_kill_and_a_redis_restart(
        server: RedisServer, tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    app = App(server.url)  # builds the workflow by name: it imports no task
    g = group(app.signature("wf.member", [i], {"sleep_s": 0.03}) for i in range(MEMBERS)).then(
        app.signature("wf.collect")).delay()
    procs = workers(server.url, runs, 3)
    members = lambda: {n for kind, n, _, _ in read_log(runs) if kind == "member"}  # noqa: E731
    try:
        admin = server.client()
        wait_until(lambda: len(members()) >= 40 and admin.llen(keys.processing("default", "w0")),
                   8, what="a fifth of the members to run, w0 holding some")
        procs[0].send_signal(signal.SIGKILL)  # holding reserved members, mid-way
        procs[0].wait(5)
        assert admin.llen(keys.processing("default", "w0")) > 0  # its lease is still running
        wait_until(lambda: len(members()) >= 100, 8, what="half of the members to run")
        callbacks = lambda: [e for e in read_log(runs) if e[0] == "callback"]  # noqa: E731
        assert not callbacks() and len(members()) < MEMBERS
        server.restart(kill=True)  # a crash: what was acknowledged is in the AOF
        wait_until(lambda: callbacks(), 8, what="the callback to run")
        wait_until(lambda: drained(server, ["w0", "w1", "w2"]), 5, what="the queue to drain")
        assert len(callbacks()) == 1, callbacks()
        _, count, detail, _ = callbacks()[0]
        assert count == MEMBERS and json.loads(detail) == list(range(MEMBERS))
        assert members() == set(range(MEMBERS))  # each at least once (re-runs allowed)
        assert g.callback is not None and g.callback.result(3) == MEMBERS
        assert g.status == "succeeded"
    finally:
        for p in procs:
            stop(p)
        app.close()


def test_chain_of_5_completes_in_order_when_a_worker_dies_in_step_3(
        server: RedisServer, tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    app = App(server.url)
    steps = [app.signature("wf.step", [[], 0])] + [
        app.signature("wf.step", [k], {"sleep_s": 1.0 if k == 3 else 0.0}) for k in range(1, 5)]
    c = chain(*steps).delay()
    procs = workers(server.url, runs, 2)
    try:
        wait_until(lambda: any(e[:2] == ("start", 3) for e in read_log(runs)), 8,
                   what="step 3 to start")
        pid = next(e[3] for e in read_log(runs) if e[:2] == ("start", 3))
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        assert c.result(8) == [0, 1, 2, 3, 4]
        log = read_log(runs)
        finished = [(n, json.loads(detail)) for kind, n, detail, _ in log if kind == "step"]
        # In order, each once it had every earlier result; step 3 started again elsewhere.
        assert [n for n, _ in finished] == [0, 1, 2, 3, 4]
        assert all(done == list(range(n)) for n, done in finished)
        starts_3 = [e for e in log if e[:2] == ("start", 3)]
        assert len(starts_3) >= 2 and starts_3[-1][3] != pid
        assert c.status == "succeeded"
    finally:
        for p in procs:
            stop(p)
        app.close()


def test_a_worker_dying_between_recording_a_member_and_acking_it(server: RedisServer,
                                                                  tmp_path: Path) -> None:
    """The worst instant: member 7's outcome is in the group, its message not acked, and its
    worker exits. Another worker recovers the message and runs member 7 again; that second
    outcome counts nothing, and the callback runs once with every result."""
    runs, marker = tmp_path / "runs.log", tmp_path / "crashed"
    app = App(server.url)
    g = group(app.signature("wf.member", [i], {"sleep_s": 0.02}) for i in range(20)).then(
        app.signature("wf.collect")).delay()
    procs = [start_worker(server.url, "--app", "tests.support.wf_app:app", "--worker-id", f"w{i}",
                          "--concurrency", "2", RUNS_FILE=str(runs), CRASH_AFTER_MEMBER="7",
                          CRASH_MARKER=str(marker)) for i in range(3)]
    try:
        assert g.callback is not None and g.callback.result(8) == 20
        wait_until(lambda: [n for kind, n, _, _ in read_log(runs) if kind == "member"].count(7)
                   == 2, 5, what="member 7 to run again on another worker")
        wait_until(lambda: drained(server, ["w0", "w1", "w2"]), 5, what="the queue to drain")
        assert marker.exists() and sorted(p.poll() for p in procs if p.poll() is not None) == [9]
        callbacks = [e for e in read_log(runs) if e[0] == "callback"]
        assert len(callbacks) == 1 and json.loads(callbacks[0][2]) == list(range(20))
        assert g.progress()["done"] == 20
    finally:
        for p in procs:
            stop(p)
        app.close()


def test_a_dependent_survives_its_parents_worker_being_killed(server: RedisServer,
                                                              tmp_path: Path) -> None:
    """RQ's failure mode: the worker running a parent dies and the dependent is orphaned. Here
    the parent is recovered and run again by another worker, and the dependent runs once."""
    runs = tmp_path / "runs.log"
    app = App(server.url)
    parent = app.enqueue("wf.step", ([], 0), {"sleep_s": 1.0})
    other = app.enqueue("wf.member", (1,))
    child = app.enqueue("wf.member", (2,), depends_on=[parent, other])
    procs = workers(server.url, runs, 2)
    try:
        wait_until(lambda: any(e[:2] == ("start", 0) for e in read_log(runs)), 8,
                   what="the parent to start")
        pid = next(e[3] for e in read_log(runs) if e[:2] == ("start", 0))
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        assert child.result(8) == 2
        log = read_log(runs)
        assert [e[3] for e in log if e[:2] == ("start", 0)][-1] != pid  # run again elsewhere
        assert [e[:2] for e in log].count(("member", 2)) == 1
        assert log.index(next(e for e in log if e[:2] == ("step", 0))) < log.index(
            next(e for e in log if e[:2] == ("member", 2)))
    finally:
        for p in procs:
            stop(p)
        app.close()
