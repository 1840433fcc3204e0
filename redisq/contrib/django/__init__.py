"""Django integration: ``"redisq.contrib.django"`` in ``INSTALLED_APPS``.

What it gives a Django project (docs/django.md):

- ``REDISQ = {"url": ..., ...}`` in the Django settings builds the project's :class:`App`
  (:func:`get_app`, also importable as ``redisq.contrib.django.app``);
- each installed app's ``tasks`` module is imported when Django starts (like Celery's
  ``autodiscover_tasks``), so a worker knows every task;
- ``task.delay_on_commit(...)`` queues through ``transaction.on_commit``: a job is never queued
  for a row whose transaction rolled back;
- ``close_old_connections()`` before and after every job (``"close_connections": False`` turns
  it off), as Django does around each request: a job never inherits a connection the database
  dropped, nor leaves one open for ever in a worker thread;
- ``manage.py redisq_worker``: ``redisq worker`` with the project's App.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from redisq.app import App
from redisq.job import JobContext
from redisq.loading import load_app

#: The App's own keyword arguments ``REDISQ`` may set.
APP_OPTIONS = frozenset({"serializer", "result_ttl_s", "failure_ttl_s", "dead_max", "events",
                         "wait_replicas", "wait_timeout_s", "args_summary_bytes",
                         "max_message_bytes"})

_lock = threading.RLock()  # (re-entrant: a REDISQ["app"] module may import this one)
_app: App | None = None


@dataclass(frozen=True)
class DjangoOptions:
    """``settings.REDISQ``, besides the App's own options (:data:`APP_OPTIONS`)."""

    url: str | None = None  # None: $REDISQ_URL, $REDIS_URL, else redis://127.0.0.1:6379/0
    app: str | None = None  # "module:attribute" of an App of your own, instead of a new one
    autodiscover: bool = True  # import <app>.<tasks_module> of every installed app
    tasks_module: str = "tasks"
    close_connections: bool = True  # close_old_connections() before and after every job
    database: str | None = None  # the alias whose transactions delay_on_commit waits for


def read_settings() -> tuple[DjangoOptions, dict[str, Any]]:
    """``settings.REDISQ`` split into :class:`DjangoOptions` and App keyword arguments; an
    unknown key is ``ImproperlyConfigured`` (a typo must not be silently ignored)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    raw = getattr(settings, "REDISQ", {}) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("settings.REDISQ must be a dict")
    own = {f.name for f in fields(DjangoOptions)}
    unknown = sorted(set(raw) - own - APP_OPTIONS)
    if unknown:
        raise ImproperlyConfigured(f"unknown settings.REDISQ key(s) {unknown}; known: "
                                   f"{sorted(own | APP_OPTIONS)}")
    options = DjangoOptions(**{k: v for k, v in raw.items() if k in own})
    app_kwargs = {k: v for k, v in raw.items() if k in APP_OPTIONS}
    if options.app and app_kwargs:
        raise ImproperlyConfigured(f"settings.REDISQ: {sorted(app_kwargs)} are the App's own "
                                   "options: set them where REDISQ['app'] builds it")
    return options, app_kwargs


def get_app() -> App:
    """The project's App, built from ``settings.REDISQ`` on first use (thread-safe), with the
    Django hooks installed (:func:`install`)."""
    global _app
    with _lock:
        if _app is None:
            options, app_kwargs = read_settings()
            if options.app:
                app = load_app(options.app, "settings.REDISQ['app']", options.url)
            else:
                app = App(options.url, **app_kwargs)
            install(app, options)
            _app = app
        return _app


def install(app: App, options: DjangoOptions | None = None) -> App:
    """Give ``app`` the Django behaviour: ``delay_on_commit`` through
    ``transaction.on_commit``, and (unless ``options.close_connections`` is false)
    ``close_old_connections`` around every job. Idempotent."""
    from django.db import transaction

    options = options or DjangoOptions()
    if getattr(app, "_django_installed", False):
        return app
    database = options.database

    def on_commit(callback: Callable[[], Any]) -> None:
        # Outside an atomic block Django runs the callback at once; inside, after the
        # outermost block commits, and never if it rolls back.
        transaction.on_commit(callback, using=database)

    app.use_commit_hook(on_commit)
    if options.close_connections:
        app.before_job(_close_before)
        app.after_job(_close_after)
    app._django_installed = True  # type: ignore[attr-defined]
    return app


def _close_before(ctx: JobContext) -> None:
    from django import db

    db.close_old_connections()


def _close_after(ctx: JobContext, outcome: Any) -> None:
    from django import db

    db.close_old_connections()


def autodiscover(options: DjangoOptions | None = None) -> None:
    """Import ``<app>.tasks`` of every installed Django app that has one (an error inside such
    a module is raised, not hidden)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules((options or DjangoOptions()).tasks_module)


def __getattr__(name: str) -> Any:
    # ``from redisq.contrib.django import app`` and ``--app redisq.contrib.django:app``: the
    # App is built on first access. From outside Django (``redisq worker --app``, the web
    # app's REDISQ_APP, with DJANGO_SETTINGS_MODULE set) Django is set up first, so every
    # app's tasks are registered and their ORM calls work; while Django itself is loading
    # (a tasks module imported by autodiscovery) it is not set up again.
    if name == "app":
        from django.apps import apps

        if not apps.ready and not apps.loading:
            import django

            django.setup()
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["APP_OPTIONS", "DjangoOptions", "autodiscover", "get_app", "install", "read_settings"]
