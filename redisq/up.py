"""``redisq up``: everything on one machine, for trying redisq and for development.

Starts the embedded Redis when no URL is configured, one prodcons worker, one pubsub worker and
the web app (gunicorn when installed, else Flask's server), prints the URL, and stops all of
them on Ctrl-C or SIGTERM. A child that dies stops the rest (exit 1), so nothing half-runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from .config import Settings
from .server import RedisServer

log = logging.getLogger("redisq.up")


def _commands(settings: Settings, app_spec: str) -> dict[str, list[str]]:
    py = sys.executable
    worker = [py, "-m", "redisq", "worker", "--app", app_spec]
    bind = f"{settings.web_host}:{settings.web_port}"
    if importlib.util.find_spec("gunicorn") is not None:
        web = [py, "-m", "gunicorn", "--workers", "2", "--threads", "16", "--worker-class",
               "gthread", "--bind", bind, "--access-logfile", "-", "webapp:create_app()"]
    else:
        web = [py, "-m", "redisq", "web"]
    return {"worker-prodcons": [*worker, "--mode", "prodcons"],
            "worker-pubsub": [*worker, "--mode", "pubsub"], "web": web}


def run(settings: Settings, app_spec: str = "webapp.tasks:app",
        announce: Callable[[str], object] = log.warning) -> int:
    """Run everything until a signal; ``announce`` tells the user where it is (the CLI prints
    it); returns the exit code."""
    server = None
    url = settings.url
    if not url:
        server = RedisServer(settings.data_dir).start()
        url = server.url
        log.info("embedded server at %s (data in %s)", url, settings.data_dir)
    env = {**os.environ, "REDIS_URL": url, "REDISQ_APP": app_spec}
    env.pop("REDISQ_URL", None)
    stop = threading.Event()
    children: dict[str, subprocess.Popen[bytes]] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name, cmd in _commands(settings, app_spec).items():
            # Own sessions: a terminal's Ctrl-C reaches only us, and we stop each child once.
            children[name] = subprocess.Popen(cmd, env=env, start_new_session=True)
        announce(f"redisq is up: http://{settings.web_host}:{settings.web_port}/  "
                 f"(REDIS_URL={url}; Ctrl-C stops everything)")
        code = _watch(children, stop)
    finally:
        _stop_all(children, settings.grace_s)
        if server is not None:
            server.stop()
    return code


def _watch(children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> int:
    while not stop.wait(0.2):
        for name, proc in children.items():
            if proc.poll() is not None:
                log.error("%s exited with %s; stopping everything", name, proc.returncode)
                return 1
    return 0


def _stop_all(children: dict[str, subprocess.Popen[bytes]], grace_s: float) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in children.values():
        try:
            proc.wait(grace_s + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
