"""What the blueprints share: the per-app state, JSON errors and page headers.

A module of its own so the blueprints and ``create_app`` (in ``__init__``) import it one way:
the package imports the blueprints, the blueprints import this.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request, url_for
from jinja2 import Environment, FileSystemLoader
from werkzeug.exceptions import HTTPException

from redisq import App
from redisq import config as rq_config
from redisq.backend.connection import CONNECTION_ERRORS

from .hub import Hub

log = logging.getLogger("redisq.web")

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class WebState:
    """What the views share: the redisq App (one client and connection pool per Flask app),
    the settings, and the dashboard's rate baseline."""

    queue_app: App
    settings: rq_config.Settings
    sse_keepalive_s: float = 5.0
    # (time, settled jobs per queue) of recent snapshots: the dashboard's rates span them
    rate_history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    metrics_registry: Any = None  # prometheus CollectorRegistry, made on first scrape
    lock: threading.Lock = field(default_factory=threading.Lock)
    hub: Hub | None = None  # the process's one subscription, shared by the streams
    # The last dashboard snapshot as an SSE event, (monotonic time, text): every open
    # dashboard shares it instead of each reading Redis every second.
    snapshot_cache: tuple[float, str] | None = None
    snapshot_lock: threading.Lock = field(default_factory=threading.Lock)
    # Where the routes are: "" and "" for create_app's own app; the URL prefix and "redisq."
    # (the endpoints' blueprint) when the Redisq extension mounts them in a host app.
    url_prefix: str = ""
    endpoint_prefix: str = ""
    templates: Environment | None = None  # the pages' own Jinja environment, made on first use

    def endpoint(self, name: str) -> str:
        """The full endpoint name of one of the app's own endpoints (``"stream.dashboard"``)."""
        return self.endpoint_prefix + name


def state(app: Flask | None = None) -> WebState:
    """The :class:`WebState` of ``app`` (default: the current app)."""
    return (app or current_app).extensions["redisq"]  # type: ignore[no-any-return]


# The pages load their script and styles from this origin only (no CDN, no inline code), may
# not be framed, and talk only to this origin (fetch, EventSource).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(template: str, **context: Any) -> Response:
    """An HTML page, with :data:`PAGE_HEADERS`. Rendered from webapp's own templates only (a
    host app's ``base.html`` must not replace ours), with ``rq_root`` (the dashboard's URL,
    ending in "/") and ``rq_static`` (the static files' endpoint) for links that work wherever
    the app is mounted."""
    st = state()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if st.templates is None:
        # An overlay shares Flask's globals (url_for, request...) but not its loader.
        st.templates = app.jinja_env.overlay(loader=FileSystemLoader(TEMPLATES))
    ctx = {"rq_root": url_for(st.endpoint("stream.dashboard")),
           "rq_static": st.endpoint("static"), **context}
    app.update_template_context(ctx)
    response = app.make_response(st.templates.get_template(template).render(ctx))
    response.headers.update(PAGE_HEADERS)
    return response


def wants_html() -> bool:
    """Whether the client (a browser navigating) prefers HTML to JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def error(code: int, message: str, headers: dict[str, str] | None = None,
          **extra: Any) -> Response:
    """A JSON error response: ``{"error": message, ...}`` with HTTP status ``code``."""
    response = current_app.json.response({"error": message, **extra})
    response.status_code = code
    if headers:
        response.headers.update(headers)
    return response


def http_error(exc: HTTPException) -> Response:
    return error(exc.code or 500, exc.description or exc.name)


def unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, CONNECTION_ERRORS):
        log.warning("redis unavailable on %s %s: %s", request.method, request.path, exc)
        return error(503, "redis unavailable, try again", headers={"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error(500, "internal error")  # the traceback goes to the log, never over HTTP


__all__ = ["PAGE_HEADERS", "WebState", "error", "http_error", "page", "state", "unexpected_error",
           "wants_html"]
