"""The Flask front end: ``create_app(config=None)``.

Requests answer at once and hand slow work to redisq. State lives on the Flask app
(``app.extensions["redisq"]``), never in module globals, so several apps (tests) coexist.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from redisq import ConfigError
from redisq import config as rq_config
from redisq.loading import load_app

from . import security
from .api import api
from .http import WebState, error, http_error, page, state, unexpected_error
from .hub import Hub
from .jobs import jobs_bp
from .ops import ops
from .stream import stream

DEMO_APP = "webapp.tasks:app"  # only when asked for: REDISQ_APP=webapp.tasks:app, redisq up --demo


def _split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Sort ``create_app``'s config into redisq settings, Flask config, the App spec and an App
    object. Settings are spelt as fields (``web_token``) or variables (``REDISQ_WEB_TOKEN``);
    other upper-case keys (``TESTING``...) are Flask's; anything else is an unknown setting."""
    settings: dict[str, Any] = {}
    flask_config: dict[str, Any] = {}
    spec = app_obj = None
    for key, value in config.items():
        if key == "REDISQ_APP":
            spec, app_obj = (value, None) if isinstance(value, str) else (None, value)
        elif key.startswith(rq_config.ENV_PREFIX):
            settings[key[len(rq_config.ENV_PREFIX):].lower()] = value
        elif key.isupper():
            flask_config[key] = value
        else:
            settings[key] = value  # config.load rejects names that are not settings
    return settings, flask_config, spec, app_obj


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the web app.

    ``config`` may hold redisq settings (``web_token``, ``url``, ``REDISQ_WEB_MAX_BODY_BYTES``...)
    over the environment's (``redisq.config.load``), ``REDISQ_APP`` (``"module:attr"`` or an App
    object; else the ``REDISQ_APP`` setting; none is a :class:`ConfigError`),
    ``REDISQ_SSE_KEEPALIVE_S`` and Flask settings. Settings that would leave the app open (a
    short token, a non-loopback trusted host without a token) are a :class:`ConfigError` too.
    """
    overrides, flask_config, spec, queue_app = _split_config(dict(config or {}))
    keepalive_s = float(overrides.pop("sse_keepalive_s", 5.0))
    settings = rq_config.load(overrides)
    rq_config.check_web(settings)
    if queue_app is None:
        spec = spec or settings.app
        if not spec:
            # No silent demo: a production app that lost its REDISQ_APP must not serve the
            # demo tasks (whose counter writes into Redis) in its place.
            raise ConfigError("no redisq App configured: set REDISQ_APP=package.module:attribute"
                              f" (the demo: REDISQ_APP={DEMO_APP}, or `redisq up --demo`)")
        # REDISQ_URL / --url win over the module's default, as in the CLI.
        queue_app = load_app(spec, "REDISQ_APP", settings.url)
    flask_app = Flask(__name__)
    flask_app.config.update(flask_config)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.web_max_body_bytes
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    web_state = WebState(queue_app, settings, keepalive_s)
    web_state.hub = Hub(lambda: queue_app.client, settings.web_max_streams)
    flask_app.extensions["redisq"] = web_state

    for blueprint in (api, stream, ops, jobs_bp):
        flask_app.register_blueprint(blueprint)
    security.install(flask_app, settings)
    flask_app.register_error_handler(HTTPException, http_error)
    flask_app.register_error_handler(Exception, unexpected_error)
    return flask_app


__all__ = ["DEMO_APP", "WebState", "create_app", "error", "page", "state"]
