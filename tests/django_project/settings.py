"""Settings of the test project. The database file and Redis URL come from the environment
(the test sets them: a worker in another thread or process must see the same file)."""

from __future__ import annotations

import os

SECRET_KEY = "redisq-tests-only"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "tests.django_project.shop",
    "redisq.contrib.django",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["SHOP_DB_PATH"],
        "OPTIONS": {"timeout": 5},  # the worker writes while the test reads
    },
    "other": {  # a second database: delay_on_commit waits for REDISQ["database"]'s commits
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["SHOP_DB_PATH"] + ".other",
    },
}
# url: None, so $REDISQ_URL (the management-command test sets it; in-process tests point the
# App at their server with use_url).
REDISQ = {"result_ttl_s": 600.0}
