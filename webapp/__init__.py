"""The Flask front end: ``create_app(config=None)``.

Requests answer at once and hand slow work to redisq. State lives on the Flask app
(``app.extensions["redisq"]``), never in module globals, so several apps (tests) coexist.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from redisq import App, ConfigError
from redisq import config as rq_config
from redisq.backend.connection import CONNECTION_ERRORS

log = logging.getLogger("redisq.web")

DEMO_APP = "webapp.tasks:app"  # only when asked for: REDISQ_APP=webapp.tasks:app, redisq up --demo


@dataclass
class WebState:
    """What the views share: the redisq App (one client and connection pool per Flask app),
    the settings, and the dashboard's rate baseline."""

    rq: App
    settings: rq_config.Settings
    sse_keepalive_s: float = 5.0
    # (time, settled jobs per queue) of recent snapshots: the dashboard's rates span them
    rate_history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    metrics_registry: Any = None  # prometheus CollectorRegistry, made on first scrape
    lock: threading.Lock = field(default_factory=threading.Lock)
    hub: Any = None  # webapp.hub.Hub: the process's one subscription, shared by the streams
    # The last dashboard snapshot as an SSE event, (monotonic time, text): every open
    # dashboard shares it instead of each reading Redis every second.
    snapshot_cache: tuple[float, str] | None = None
    snapshot_lock: threading.Lock = field(default_factory=threading.Lock)


def state(app: Flask | None = None) -> WebState:
    """The :class:`WebState` of ``app`` (default: the current app)."""
    return (app or current_app).extensions["redisq"]  # type: ignore[no-any-return]


def load_rq_app(spec: str) -> App:
    """Import a redisq App from ``package.module:attribute``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for REDISQ_APP: {exc}") from exc
    rq = getattr(module, attr or "app", None)
    if not isinstance(rq, App):
        raise ConfigError(f"{spec!r} is not a redisq App")
    return rq


def _split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Sort ``create_app``'s config into redisq settings, Flask config, the App spec and an App
    object. Settings are spelt as fields (``web_token``) or variables (``REDISQ_WEB_TOKEN``);
    other upper-case keys (``TESTING``...) are Flask's; anything else is an unknown setting."""
    settings: dict[str, Any] = {}
    flask_config: dict[str, Any] = {}
    spec = rq_obj = None
    for key, value in config.items():
        if key == "REDISQ_APP":
            spec, rq_obj = (value, None) if isinstance(value, str) else (None, value)
        elif key == "RQ_APP":  # an App object (tests build their own)
            rq_obj = value
        elif key.startswith(rq_config.ENV_PREFIX):
            settings[key[len(rq_config.ENV_PREFIX):].lower()] = value
        elif key.isupper():
            flask_config[key] = value
        else:
            settings[key] = value  # config.load rejects names that are not settings
    return settings, flask_config, spec, rq_obj


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the web app.

    ``config`` may hold redisq settings (``web_token``, ``url``, ``REDISQ_WEB_MAX_BODY_BYTES``...)
    over the environment's (``redisq.config.load``), ``REDISQ_APP`` (``"module:attr"`` or an App
    object; else the ``REDISQ_APP`` setting; none is a :class:`ConfigError`),
    ``REDISQ_SSE_KEEPALIVE_S`` and Flask settings. Settings that would leave the app open (a
    short token, a non-loopback trusted host without a token) are a :class:`ConfigError` too.
    """
    overrides, flask_config, spec, rq = _split_config(dict(config or {}))
    keepalive_s = float(overrides.pop("sse_keepalive_s", 5.0))
    settings = rq_config.load(overrides)
    rq_config.check_web(settings)
    if rq is None:
        spec = spec or settings.app
        if not spec:
            # No silent demo: a production app that lost its REDISQ_APP must not serve the
            # demo tasks (whose counter writes into Redis) in its place.
            raise ConfigError("no redisq App configured: set REDISQ_APP=package.module:attribute"
                              f" (the demo: REDISQ_APP={DEMO_APP}, or `redisq up --demo`)")
        rq = load_rq_app(spec)
        if settings.url:
            rq._url = settings.url  # REDISQ_URL / --url win over the module's default, as in the CLI
    flask_app = Flask(__name__)
    flask_app.config.update(flask_config)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.web_max_body_bytes
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    from .hub import Hub

    web_state = WebState(rq, settings, keepalive_s)
    web_state.hub = Hub(lambda: rq.client, settings.web_max_streams)
    flask_app.extensions["redisq"] = web_state

    from . import security
    from .api import api
    from .ops import ops
    from .stream import stream

    for blueprint in (api, stream, ops):
        flask_app.register_blueprint(blueprint)
    security.install(flask_app, settings)
    flask_app.register_error_handler(HTTPException, _http_error)
    flask_app.register_error_handler(Exception, _unexpected_error)
    return flask_app


# The pages load their script and styles from this origin only (no CDN, no inline code), may
# not be framed, and talk only to this origin (fetch, EventSource).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(template: str, **context: Any) -> Response:
    """An HTML page, with :data:`PAGE_HEADERS`."""
    response = current_app.make_response(render_template(template, **context))
    response.headers.update(PAGE_HEADERS)
    return response


def error(code: int, message: str, headers: dict[str, str] | None = None,
          **extra: Any) -> Response:
    """A JSON error response: ``{"error": message, ...}`` with HTTP status ``code``."""
    response = current_app.json.response({"error": message, **extra})
    response.status_code = code
    if headers:
        response.headers.update(headers)
    return response


def _http_error(exc: HTTPException) -> Response:
    return error(exc.code or 500, exc.description or exc.name)


def _unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, CONNECTION_ERRORS):
        log.warning("redis unavailable on %s %s: %s", request.method, request.path, exc)
        return error(503, "redis unavailable, try again", headers={"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error(500, "internal error")  # the traceback goes to the log, never over HTTP
