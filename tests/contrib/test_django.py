"""redisq.contrib.django on a real small Django project (tests/django_project: sqlite file
database) with real workers on a real redis-server: a worker thread for most tests, and
``manage.py redisq_worker`` as a process for the command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redisq import App
from redisq.backend.embedded import RedisServer
from tests.support import inproc
from tests.support.wait import wait_until

django = pytest.importorskip("django")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1] / "django_project"
ROOT = PROJECT.parents[1]
TASK = "tests.django_project.shop.tasks.ship_order"


@pytest.fixture(scope="module")
def dj_app(tmp_path_factory: pytest.TempPathFactory, shared_server: RedisServer) -> App:
    """Django set up once for the process (settings can be configured only once), on a sqlite
    file; the project's App, as ``settings.REDISQ`` built it."""
    from django.core.management import call_command

    if not django.conf.settings.configured:
        db = tmp_path_factory.mktemp("django") / "db.sqlite3"
        os.environ["SHOP_DB_PATH"] = str(db)
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_project.settings"
        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0)
    from redisq.contrib.django import get_app

    return get_app()


@pytest.fixture
def app(dj_app: App, redis_url: str) -> Iterator[App]:
    from tests.django_project.shop.models import Order

    dj_app.use_url(redis_url)
    dj_app.close()  # a fresh client on the (flushed) server
    Order.objects.all().delete()
    yield dj_app
    dj_app.close()


def queued(app: App) -> int:
    return app.queue("default").counts().get("enqueued", 0)


def test_settings_build_the_app_and_autodiscover_tasks(dj_app: App) -> None:
    """REDISQ's App options apply, and shop/tasks.py was imported by the app config (this
    module never imports it before this point)."""
    assert dj_app.result_ttl_s == 600.0
    assert TASK in dj_app.tasks
    assert dj_app.commit_hook is not None


def test_rolled_back_transaction_queues_no_job(app: App) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    with pytest.raises(RuntimeError, match="payment declined"), transaction.atomic():
        order = Order.objects.create(item="book")
        ship_order.delay_on_commit(order.pk)
        raise RuntimeError("payment declined")
    assert not Order.objects.exists()
    assert queued(app) == 0 and app.queue("default").depth() == 0


def test_committed_transaction_queues_exactly_one_job_that_sees_the_row(app: App) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    with inproc.running(app, queues="default"):
        with transaction.atomic():
            order = Order.objects.create(item="lamp")
            ship_order.delay_on_commit(order.pk)
            assert queued(app) == 0  # not before the commit: a worker would not find the row
        assert queued(app) == 1
        wait_until(lambda: Order.objects.get(pk=order.pk).shipped, what="the job ran")
        counts = wait_until(lambda: (c := app.queue("default").counts()).get("succeeded") and c)
    assert counts["enqueued"] == counts["succeeded"] == 1 and counts.get("dead", 0) == 0


def test_nested_savepoint_rollback_drops_only_its_jobs(app: App) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    with transaction.atomic():
        kept = Order.objects.create(item="kept")
        ship_order.delay_on_commit(kept.pk)
        with pytest.raises(ValueError), transaction.atomic():
            gone = Order.objects.create(item="gone")
            ship_order.delay_on_commit(gone.pk)
            raise ValueError
    assert queued(app) == 1


def test_outside_a_transaction_the_job_is_queued_at_once(app: App) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    order = Order.objects.create(item="pen")
    assert ship_order.delay_on_commit(order.pk) is None
    assert queued(app) == 1


def test_bad_arguments_fail_in_the_caller_not_after_the_commit(app: App) -> None:
    from tests.django_project.shop.tasks import ship_order

    with pytest.raises(TypeError), transaction.atomic():
        ship_order.delay_on_commit(1, 2)  # type: ignore[call-arg]
    assert queued(app) == 0


def make_probe(redis_url: str, close_connections: bool) -> tuple[App, Any]:
    """A fresh App with the Django hooks, and a task that tells whether this thread's
    database connection was closed before it started (then uses it, leaving it open)."""
    from redisq.contrib.django import DjangoOptions, install
    from tests.django_project.shop.models import Order

    probing = install(App(redis_url), DjangoOptions(close_connections=close_connections))

    @probing.task(name="probe")
    def probe() -> bool:
        closed = connection.connection is None
        Order.objects.count()  # opens this thread's connection
        return closed

    return probing, probe


@pytest.mark.parametrize("close", [True, False])
def test_close_old_connections_around_every_job(redis_url: str, dj_app: App,
                                                close: bool) -> None:
    """One worker thread runs two jobs in turn: the second finds the first job's connection
    closed (as Django closes it after a request) only with close_connections on."""
    probe_app, probe = make_probe(redis_url, close)
    with inproc.running(probe_app, queues="default", concurrency=1):
        assert probe.delay().result(timeout_s=5) is True  # a new thread: no connection yet
        assert probe.delay().result(timeout_s=5) is close
    probe_app.close()


@pytest.mark.parametrize("database", [None, "other"])
def test_delay_on_commit_waits_for_the_configured_database(redis_url: str, dj_app: App,
                                                           database: str | None) -> None:
    """REDISQ["database"]: the alias whose commit the job waits for. A transaction on
    another alias does not hold it back (the default database is in autocommit there)."""
    from redisq.contrib.django import DjangoOptions, install

    other_app = install(App(redis_url), DjangoOptions(database=database))
    task = other_app.task(name="noop")(lambda: None)
    with transaction.atomic(using="other"):
        task.delay_on_commit()
        assert queued(other_app) == (1 if database is None else 0)
    assert queued(other_app) == 1
    other_app.close()


def test_django_testcase_capture_runs_delay_on_commit(app: App) -> None:
    """What docs/django.md tells Django TestCase users: inside the test's transaction (rolled
    back at its end), captureOnCommitCallbacks(execute=True) queues the job."""
    from django.test import TestCase

    from tests.django_project.shop.tasks import ship_order

    with pytest.raises(ZeroDivisionError), transaction.atomic():  # the TestCase's transaction
        with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
            ship_order.delay_on_commit(1)
        assert len(callbacks) == 1 and queued(app) == 1
        1 / 0  # noqa: B018  (the TestCase's rollback)
    assert queued(app) == 1


def test_unknown_setting_is_an_error(dj_app: App) -> None:
    from redisq.contrib.django import read_settings

    with override_settings(REDISQ={"url": "redis://x", "resul_ttl_s": 1}), \
            pytest.raises(ImproperlyConfigured, match="resul_ttl_s"):
        read_settings()


def test_manage_py_redisq_worker_runs_the_projects_tasks(app: App, redis_url: str) -> None:
    """The command, as a process: it finds the project's App and its autodiscovered tasks, and
    passes worker options through (--burst: drain, then exit 0)."""
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    with transaction.atomic():
        order = Order.objects.create(item="chair")
        ship_order.delay_on_commit(order.pk)
    env = {**os.environ, "REDISQ_URL": redis_url, "REDISQ_BLOCK_TIMEOUT_S": "0.2"}
    res = subprocess.run([sys.executable, str(PROJECT / "manage.py"), "redisq_worker",
                          "--burst", "--queues", "default", "--concurrency", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=9)
    assert res.returncode == 0, res.stderr
    assert Order.objects.get(pk=order.pk).shipped
    assert app.queue("default").counts().get("succeeded") == 1


def test_plain_redisq_worker_takes_the_django_app(app: App, redis_url: str) -> None:
    """``redisq worker --app redisq.contrib.django:app`` with DJANGO_SETTINGS_MODULE set sets
    Django up first: the autodiscovered task runs, with the ORM."""
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import ship_order

    order = Order.objects.create(item="desk")
    ship_order.delay_on_commit(order.pk)
    env = {**os.environ, "REDISQ_URL": redis_url, "REDISQ_BLOCK_TIMEOUT_S": "0.2",
           "DJANGO_SETTINGS_MODULE": "tests.django_project.settings", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "redisq", "worker", "--app",
                          "redisq.contrib.django:app", "--burst"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=9)
    assert res.returncode == 0, res.stderr
    assert Order.objects.get(pk=order.pk).shipped


def test_the_web_app_takes_the_django_app(app: App) -> None:
    """REDISQ_APP=redisq.contrib.django:app: the dashboard offers the project's tasks."""
    from webapp import create_app, state

    web = create_app({"REDISQ_APP": "redisq.contrib.django:app", "TESTING": True})
    try:
        assert state(web).queue_app is app
        assert TASK in web.test_client().get("/").get_data(as_text=True)
    finally:
        state(web).hub.close()


def test_manage_py_redisq_worker_passes_bad_options_to_the_worker(redis_url: str) -> None:
    env = {**os.environ, "REDISQ_URL": redis_url}
    res = subprocess.run([sys.executable, str(PROJECT / "manage.py"), "redisq_worker",
                          "--concurrency", "many"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=9)
    assert res.returncode == 2 and "many" in res.stderr


def test_redisq_worker_help_lists_the_worker_options(dj_app: App) -> None:
    from redisq.contrib.django.management.commands.redisq_worker import Command

    text = Command().create_parser("manage.py", "redisq_worker").format_help()
    for flag in ("--burst", "--queues", "--concurrency", "--grace-s", "--with-scheduler"):
        assert flag in text
    assert "--app" not in text
