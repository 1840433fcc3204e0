"""The Flask front end: ``create_app(config=None)``.

Requests answer at once and hand slow work to redisq. State lives on the Flask app
(``app.extensions["redisq"]``), never in module globals.
"""

from __future__ import annotations

import hmac
import importlib
import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from redisq import App, config
from redisq.connection import CONNECTION_ERRORS

log = logging.getLogger("redisq.web")


@dataclass
class WebState:
    """What the views share: the redisq App and the settings."""

    rq: App
    settings: config.Settings
    last_snapshot: dict[str, Any] | None = None  # for rates between dashboard refreshes
    metrics_registry: Any = None  # prometheus CollectorRegistry, made on first scrape


def state(app: Flask | None = None) -> WebState:
    from flask import current_app

    return (app or current_app).extensions["redisq"]  # type: ignore[no-any-return]


def _load_rq_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    rq = getattr(importlib.import_module(module_name), attr or "app")
    if not isinstance(rq, App):
        raise TypeError(f"{spec} is not a redisq App")
    return rq


def create_app(config_overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web app. ``config_overrides`` may hold settings (``web_token``, ``url``...),
    ``REDISQ_APP`` (``module:attr``) or ``RQ_APP`` (an App object, for tests)."""
    overrides = dict(config_overrides or {})
    rq = overrides.pop("RQ_APP", None)
    spec = overrides.pop("REDISQ_APP", None)
    settings = config.load(overrides)
    if rq is None:
        rq = _load_rq_app(spec or settings.app or "webapp.tasks:app")
    if settings.url:
        rq._url = settings.url
    flask_app = Flask(__name__)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.web_max_body_bytes
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    flask_app.extensions["redisq"] = WebState(rq, settings)

    from .api import api
    from .stream import stream

    flask_app.register_blueprint(api)
    flask_app.register_blueprint(stream)
    flask_app.before_request(_check_token)
    flask_app.register_error_handler(HTTPException, _http_error)
    flask_app.register_error_handler(Exception, _unexpected_error)
    return flask_app


def _check_token() -> Response | None:
    """Every write needs ``Authorization: Bearer <token>`` when a token is configured."""
    token = state().settings.web_token
    if not token or request.method != "POST":
        return None
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return error(401, "missing bearer token (Authorization: Bearer <token>)")
    if not hmac.compare_digest(header[7:].encode(), token.encode()):
        return error(403, "invalid token")
    return None


def error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _http_error(exc: HTTPException) -> Response:
    return error(exc.code or 500, exc.description or exc.name)


def _unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, CONNECTION_ERRORS):
        log.warning("redis unavailable: %s", exc)
        return error(503, "redis unavailable, try again")
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error(500, "internal error")  # never a traceback over HTTP
