"""redisq's dashboard and JSON API inside your own Flask app: the :class:`Redisq` extension.

>>> from flask import Flask
>>> from webapp import Redisq
>>> site = Flask(__name__)
>>> Redisq(site, "myproject.queue:app", url_prefix="/queue")   # or redisq.init_app(site)

Everything ``create_app()`` serves at its root is served under the prefix, as one blueprint
(named ``redisq``): pages, static files, the JSON API, the event streams, ``/healthz`` and
``/metrics``. The Host/Origin/token/CSRF checks (:mod:`webapp.security`) guard these routes and
no other: the host app's routes, error handlers, JSON and body-size settings are its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, request
from werkzeug.exceptions import HTTPException

from redisq import App, ConfigError
from redisq import config as rq_config
from redisq.loading import load_app

from . import security
from .api import api
from .http import STATIC, WebState, http_error, unexpected_error
from .hub import Hub
from .jobs import jobs_bp
from .ops import ops
from .stream import stream

BLUEPRINT = "redisq"  # the mount's blueprint: its endpoints are "redisq.api.enqueue"...
#: Every blueprint of the web app: create_app registers them at its root, Redisq under its
#: prefix (a new blueprint goes here, and its pages and scripts build their links from
#: ``rq_root``/``rq_static`` and ``at()`` in app.js, so they work in both).
BLUEPRINTS = (api, stream, ops, jobs_bp)
DEMO_APP = "webapp.tasks:app"  # only when asked for: REDISQ_APP=webapp.tasks:app, redisq up --demo


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Sort a config into redisq settings, Flask config, the App spec and an App object.
    Settings are spelt as fields (``web_token``) or variables (``REDISQ_WEB_TOKEN``); other
    upper-case keys (``TESTING``...) are Flask's; anything else is an unknown setting."""
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


def web_state(overrides: dict[str, Any], spec: str | None, queue_app: App | None) -> WebState:
    """The views' shared state: settings (``overrides`` over the environment's), checked for
    an open app (:func:`redisq.config.check_web`), and the App (``queue_app``, else ``spec``,
    else the ``REDISQ_APP`` setting; none is a :class:`ConfigError`)."""
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
    state = WebState(queue_app, settings, keepalive_s)
    app = queue_app
    state.hub = Hub(lambda: app.client, settings.web_max_streams)
    return state


class Redisq:
    """Mount redisq's dashboard and API in a Flask app, under ``url_prefix`` (``"/redisq"``).

    ``queue_app``: the redisq :class:`App` (or ``"module:attribute"``; default: the
    ``REDISQ_APP`` setting). ``config``: redisq web settings, as ``create_app`` takes them
    (``web_token``, ``REDISQ_WEB_TRUSTED_HOSTS``...), over the host app's ``REDISQ_*`` config
    keys, over the environment. The same safe defaults apply: without ``web_token``, only
    loopback clients are answered, and only the ``web_trusted_hosts`` Host names.
    One mount per Flask app (``app.extensions["redisq"]``).
    """

    def __init__(self, app: Flask | None = None, queue_app: App | str | None = None, *,
                 url_prefix: str = "/redisq", config: Mapping[str, Any] | None = None) -> None:
        self.queue_app = queue_app
        self.url_prefix = url_prefix
        self.config = dict(config or {})
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, queue_app: App | str | None = None, *,
                 url_prefix: str | None = None,
                 config: Mapping[str, Any] | None = None) -> WebState:
        """Mount on ``app`` (the arguments given here win over the constructor's)."""
        if BLUEPRINT in app.extensions:
            raise ConfigError("redisq is already mounted on this Flask app")
        prefix = check_prefix(self.url_prefix if url_prefix is None else url_prefix)
        host_keys = {k: v for k, v in app.config.items() if k.startswith(rq_config.ENV_PREFIX)}
        overrides, flask_keys, spec, obj = split_config({**host_keys, **self.config,
                                                          **(config or {})})
        if flask_keys:
            raise ConfigError(f"unknown redisq setting(s) {sorted(flask_keys)}: the host app's "
                              "Flask settings go in its own app.config")
        chosen = queue_app if queue_app is not None else self.queue_app
        if isinstance(chosen, App):
            obj = chosen
        elif isinstance(chosen, str):
            spec, obj = chosen, None
        state = web_state(overrides, spec, obj)
        state.url_prefix, state.endpoint_prefix = prefix, BLUEPRINT + "."
        app.extensions[BLUEPRINT] = state
        app.register_blueprint(blueprint(state))
        return state


def check_prefix(prefix: str) -> str:
    """``/queue`` (a leading slash, none at the end): a host app's root is its own."""
    cleaned = prefix.rstrip("/")
    if not cleaned.startswith("/") or "<" in cleaned:
        raise ConfigError(f"url_prefix must be a path like '/queue', not {prefix!r} (to serve "
                          "redisq at a root of its own, use webapp.create_app())")
    return cleaned


def blueprint(state: WebState) -> Blueprint:
    """One blueprint with everything ``create_app`` serves, its checks and its JSON errors."""
    root = Blueprint(BLUEPRINT, __name__, url_prefix=state.url_prefix,
                     static_folder=STATIC, static_url_path="/static")
    for child in BLUEPRINTS:
        root.register_blueprint(child)
    security.install(root, state.settings, root.name + ".")
    max_body = state.settings.web_max_body_bytes

    @root.before_request
    def limit_body() -> None:
        # create_app sets MAX_CONTENT_LENGTH; here the host's own limit applies to its own
        # routes, ours to ours (a per-request limit: Flask >= 3.1).
        # (Older Flask: read-only; the API's own reads still cap their bodies.)
        with contextlib.suppress(AttributeError):
            request.max_content_length = max_body

    root.register_error_handler(HTTPException, http_error)
    root.register_error_handler(Exception, unexpected_error)
    return root


__all__ = ["BLUEPRINT", "BLUEPRINTS", "DEMO_APP", "Redisq", "split_config", "web_state"]
