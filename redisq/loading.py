"""Import a redisq App (or any object) from a ``package.module:attribute`` spec.

One loader for ``redisq worker --app``, ``REDISQ_APP`` and the web app, so they accept and
refuse the same specs with the same message.
"""

from __future__ import annotations

import importlib
from typing import Any

from .app import App
from .errors import ConfigError


def import_object(spec: str, what: str, default_attr: str = "app") -> Any:
    """The object ``spec`` names (``package.module:attribute``; attribute ``default_attr``
    when omitted); :class:`ConfigError` naming ``what`` when the module cannot be imported."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {what}: {exc}") from exc
    return getattr(module, attr or default_attr, None)


def load_app(spec: str, what: str, url: str | None = None) -> App:
    """The App ``spec`` names; ``url`` (a ``--url`` or ``REDISQ_URL``), when given, wins over
    the URL the module gave it."""
    app = import_object(spec, what)
    if not isinstance(app, App):
        raise ConfigError(f"{spec!r} is not a redisq App")
    if url:
        app.use_url(url)
    return app
