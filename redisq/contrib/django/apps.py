"""The Django app config of ``redisq.contrib.django`` (found by Django on its own)."""

from __future__ import annotations

from django.apps import AppConfig

from . import autodiscover, get_app, read_settings


class RedisqConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    """Builds the project's App when Django starts, then imports every app's tasks."""

    name = "redisq.contrib.django"
    label = "redisq"
    verbose_name = "redisq"

    def ready(self) -> None:
        options, _ = read_settings()
        get_app()  # a bad REDISQ setting fails at startup, not on the first delay()
        if options.autodiscover:
            autodiscover(options)
