"""``redisq up``, the README's main command, as a user runs it: a fresh data directory and no
REDIS_URL, so it starts the embedded server, both workers and the web app; a job posted to the
printed URL succeeds; Ctrl-C (SIGINT) stops every process it started."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from redisq.backend.embedded import free_port
from tests.support.procs import ROOT
from tests.support.wait import wait_until
from tests.web.sse import SSEClient


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the parenthesised command name: state, ppid, ...
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def test_redisq_up_runs_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REDISQ_") and k != "REDIS_URL"}
    env.update(PYTHONPATH=str(ROOT), REDISQ_DATA_DIR=str(tmp_path / "data"),
               REDISQ_BLOCK_TIMEOUT_S="0.5", REDISQ_LEASE_S="2", REDISQ_GRACE_S="2",
               REDISQ_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "redisq", "up", "--demo", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 7
        while "redisq is up" not in (announced := lines.get(timeout=deadline - time.monotonic())):
            pass  # the web server's access log shares stdout
        assert f"{base}/" in announced  # printed once the web app answers
        # Healthy means Redis answers and the workers have registered.
        wait_until(lambda: _http("GET", base + "/healthz")[1].get("workers") == 2, 6,
                   interval_s=0.1, what="web app up with both workers")
        children = _descendants(proc.pid)
        assert len(children) >= 4  # embedded server, two workers, the web server (+ its workers)
        status, body = _http("POST", base + "/prodcons", {"task": "demo.add", "args": [2, 3]})
        assert status == 202, body
        job = wait_until(lambda: (j := _http("GET", base + body["status_url"])[1])
                         .get("status") == "succeeded" and j, 3, interval_s=0.05,
                         what="the job to succeed")
        assert job["result"] == 5
        # An open dashboard (an SSE stream) must not hold up Ctrl-C.
        dashboard = SSEClient(base, "/events")
        dashboard.next("snapshot")
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(8)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0 and time.monotonic() - stopping < 5
    assert dashboard.ended(1)
    wait_until(lambda: not any(_alive(p) for p in children), 2, what="every child to be gone")


def test_redisq_web_serves_the_app(redis_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_")}
    env.update(PYTHONPATH=str(ROOT), REDISQ_WEB_TOKEN="t0ken-t0ken-t0ken",
               REDISQ_APP="webapp.tasks:app")
    proc = subprocess.Popen([sys.executable, "-m", "redisq", "web", "--port", str(port),
                             "--url", redis_url], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http("GET", base + "/jobs/nope")[0] == 401, 6, interval_s=0.1,
                   what="redisq web to answer")  # with a token, reads need it too
        # The settings come from the environment: the token protects writes.
        assert _http("POST", base + "/prodcons", {"task": "demo.add", "args": [1, 2]})[0] == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(5)
