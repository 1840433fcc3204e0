"""``redisq up``: everything on one machine, for trying redisq and for development.

Starts the embedded Redis when no URL is configured or the URL is ``embedded`` (or reuses the
one already answering in the data directory), one prodcons worker, one pubsub worker and the
web app (gunicorn when installed, else ``redisq web``), announces the URL once the web app
answers, and stops all of them on Ctrl-C or SIGTERM (a second Ctrl-C kills them at once). A
child that dies stops the rest (exit 1), so nothing half-runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

from ..backend.embedded import RedisServer, answers
from ..backend.urls import is_embedded, redact
from ..config import Settings

log = logging.getLogger("redisq.up")

READY_TIMEOUT_S = 30.0
WEB_GRACE_S = 1  # open dashboards hold SSE streams: do not wait for them to end by themselves

Children = dict[str, subprocess.Popen[bytes]]


def commands(settings: Settings, app_spec: str) -> dict[str, list[str]]:
    """The command line of each child."""
    py = sys.executable
    worker = [py, "-m", "redisq", "worker", "--app", app_spec]
    if importlib.util.find_spec("gunicorn") is not None:
        # Threads, not sync workers: each open dashboard holds a request (its SSE stream).
        # More threads than web_max_streams (16), so open streams never starve the writes.
        # --preload imports the app once, before the fork (it connects to nothing until a
        # request comes, so no connection is shared between processes).
        web = [py, "-m", "gunicorn", "--workers", "2", "--threads", "32", "--worker-class",
               "gthread", "--preload", "--bind", f"{settings.web_host}:{settings.web_port}",
               "--graceful-timeout", str(WEB_GRACE_S), "--access-logfile", "-",
               "webapp:create_app()"]
    else:
        web = [py, "-m", "redisq", "web", "--host", settings.web_host,
               "--port", str(settings.web_port)]
    return {"worker-prodcons": [*worker, "--mode", "prodcons", "--with-scheduler"],
            "worker-pubsub": [*worker, "--mode", "pubsub"], "web": web}


def run(settings: Settings, app_spec: str = "webapp.tasks:app",
        announce: Callable[[str], object] = log.warning) -> int:
    """Run everything until a signal; ``announce`` tells the user where it is (the CLI prints
    it); returns the exit code."""
    stop = threading.Event()
    children: Children = {}
    _on_signals(stop, children)
    server, url = _redis(settings)
    env = {**os.environ, "REDIS_URL": url, "REDISQ_APP": app_spec}
    env.pop("REDISQ_URL", None)  # REDIS_URL now names the server everything shares
    web_url = f"http://{settings.web_host}:{settings.web_port}/"
    try:
        for name, cmd in commands(settings, app_spec).items():
            # Own sessions: a terminal's Ctrl-C reaches only us, and we stop each child once.
            children[name] = subprocess.Popen(cmd, env=env, start_new_session=True)
        if not _wait_ready(web_url + "hello", children, stop):
            return 0 if stop.is_set() else 1
        announce(f"redisq is up: {web_url}  (REDIS_URL={redact(url)}; Ctrl-C stops everything)")
        return _watch(children, stop)
    finally:
        _stop_all(children, settings.grace_s)
        if server is not None:
            server.stop()
            log.info("embedded server stopped")


def _on_signals(stop: threading.Event, children: Children) -> None:
    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: no more waiting
            log.warning("second %s: killing everything", signal.Signals(signum).name)
            for proc in children.values():
                if proc.poll() is None:
                    proc.kill()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)


def _redis(settings: Settings) -> tuple[RedisServer | None, str]:
    """The URL to use, and the embedded server when we started it (ours to stop)."""
    if settings.url and not is_embedded(settings.url):
        return None, settings.url
    server = RedisServer(settings.data_dir)
    if answers(server.socket_path):
        # Already running (``redisq server`` elsewhere): a second server on the same data
        # directory would fight over the socket and the AOF.
        log.info("reusing the embedded server at %s", server.url)
        return None, server.url
    server.start()
    log.info("embedded server at %s (data in %s)", server.url, settings.data_dir)
    return server, server.url


def _wait_ready(url: str, children: Children, stop: threading.Event) -> bool:
    """Wait until the web app answers; False when stopped or a child died first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.is_set():
        if _exited(children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            if time.monotonic() > deadline:
                log.error("the web app did not answer %s within %.0f s", url, READY_TIMEOUT_S)
                return False
            stop.wait(0.1)
    return False


def _exited(children: Children) -> bool:
    for name, proc in children.items():
        if proc.poll() is not None:
            log.error("%s exited with %s; stopping everything", name, proc.returncode)
            return True
    return False


def _watch(children: Children, stop: threading.Event) -> int:
    while not stop.wait(0.2):
        if _exited(children):
            return 1
    return 0


def _stop_all(children: Children, grace_s: float) -> None:
    """SIGTERM each child (workers finish or hand back their jobs within ``grace_s``), then
    SIGKILL whatever is still there."""
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 5
    for proc in children.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
