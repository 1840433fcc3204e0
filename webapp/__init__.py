"""The Flask front end: ``create_app(config=None)``, a web app of its own, or
:class:`Redisq`, which mounts the same pages and API in your Flask app (``webapp.mount``).

Requests answer at once and hand slow work to redisq. State lives on the Flask app
(``app.extensions["redisq"]``), never in module globals, so several apps (tests) coexist.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from . import security
from .http import WebState, error, http_error, page, state, unexpected_error
from .mount import BLUEPRINTS, DEMO_APP, Redisq, split_config, web_state


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the web app.

    ``config`` may hold redisq settings (``web_token``, ``url``, ``REDISQ_WEB_MAX_BODY_BYTES``...)
    over the environment's (``redisq.config.load``), ``REDISQ_APP`` (``"module:attr"`` or an App
    object; else the ``REDISQ_APP`` setting; none is a :class:`ConfigError`),
    ``REDISQ_SSE_KEEPALIVE_S`` and Flask settings. Settings that would leave the app open (a
    short token, a non-loopback trusted host without a token) are a :class:`ConfigError` too.
    """
    overrides, flask_config, spec, queue_app = split_config(dict(config or {}))
    state_ = web_state(overrides, spec, queue_app)
    settings = state_.settings
    flask_app = Flask(__name__)
    flask_app.config.update(flask_config)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.web_max_body_bytes
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    flask_app.extensions["redisq"] = state_

    for blueprint in BLUEPRINTS:
        flask_app.register_blueprint(blueprint)
    security.install(flask_app, settings)
    flask_app.register_error_handler(HTTPException, http_error)
    flask_app.register_error_handler(Exception, unexpected_error)
    return flask_app


__all__ = ["DEMO_APP", "Redisq", "WebState", "create_app", "error", "page", "state"]
