"""``redisq``: the command line. Thin: it parses, builds settings, and delegates.

Exit codes: 0 ok, 1 runtime error, 2 bad configuration or usage.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from .. import config, loading
from ..app import App
from ..backend.urls import configured_url, is_embedded
from ..errors import ConfigError, RedisqError, SerializationError
from . import control_cli, jobs_cli, logs

APP_HELP = "The App, as package.module:attribute (env REDISQ_APP)."
#: The web app factory ``redisq web`` serves (``redisq up`` runs it under gunicorn).
WEB_FACTORY = "webapp:create_app"
URL_HELP = ("Redis URL, or 'embedded' (else REDISQ_URL / REDIS_URL, else "
            "redis://127.0.0.1:6379/0).")


def load_app(spec: str | None, url: str | None) -> App:
    """Import ``package.module:attribute``; with no spec, a bare App for producing only. The
    current directory is searched after everything else on ``sys.path``."""
    if not spec:
        return App(url)
    # The current directory is searched last, not first: a file there named like a module
    # redisq or the app imports (json.py, redis.py...) must not replace it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    return loading.load_app(spec, "--app", url)


def _warn_web_token(settings: config.Settings, what: str) -> None:
    """The web token has no business in a worker: every task it runs can read it."""
    if settings.web_token:
        logging.getLogger("redisq.cli").warning(
            "REDISQ_WEB_TOKEN is set in this %s's environment, where every task can read it: "
            "keep it in the web app's own environment (/etc/redisq/web.env, docs/deployment.md)",
            what)


def _daemon_app(what: str, app_spec: str | None,
                flags: dict[str, Any]) -> tuple[config.Settings, App]:
    """What every daemon command does first: settings, logging, the web-token warning, and
    the App (``--app`` is required) with the settings that are the App's own applied."""
    settings = settings_from(app=app_spec, **flags)
    logs.setup(settings.log_level, settings.log_format)
    _warn_web_token(settings, what)
    if not settings.app:
        raise ConfigError(f"{what} needs --app package.module:app (or REDISQ_APP)")
    return settings, apply_settings(load_app(settings.app, settings.url), settings)


def apply_settings(app: App, settings: config.Settings) -> App:
    """Give ``app`` the settings that are the App's own too (TTLs, dead_max, the record's
    argument summary, the message size cap); only a value set in the environment overrides
    the App's own (a default must not)."""
    defaults = config.Settings()
    for name in ("result_ttl_s", "failure_ttl_s", "dead_max", "args_summary_bytes",
                 "max_message_bytes", "index_max"):
        if getattr(settings, name) != getattr(defaults, name):
            setattr(app, name, getattr(settings, name))
    return app


def settings_from(**flags: Any) -> config.Settings:
    return config.load({k: v for k, v in flags.items() if v is not None})


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map errors to exit codes: ConfigError → 2, other failures → 1, with one clear line."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.Abort, SystemExit):
            raise  # usage errors: click prints them and exits 2
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (RedisqError, OSError, ValueError, TypeError) as exc:
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:  # a redis error or anything else: still one line, exit 1
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="redisq")
def main() -> None:
    """redisq: Redis-backed job queue and pub/sub, with a worker daemon."""


control_cli.add_commands(main, lambda url: load_app(None, settings_from(url=url).url),
                         handles_errors, URL_HELP)  # pause, resume, abort

@main.command()
@click.option("--app", "app_spec", help=APP_HELP)
@click.option("--url", help=URL_HELP)
@click.option("--mode", type=click.Choice(["prodcons", "pubsub"]), help="Consume queues or channels.")
@click.option("--queues", help="Comma-separated queues, highest priority first; "
              "high:5,default:1 weighs them instead (none starves).")
@click.option("--channels", help="Comma-separated channels (pubsub mode).")
@click.option("--concurrency", type=int, help="Jobs run at once (threads).")
@click.option("--processes", type=int,
              help="Worker processes (prodcons), each with --concurrency threads, under a "
                   "supervisor.")
@click.option("--max-jobs-per-child", type=int,
              help="Replace a worker process after this many jobs (0: never).")
@click.option("--max-memory-per-child-mb", type=float,
              help="Replace a worker process once its RSS exceeds this (0: never).")
@click.option("--burst/--no-burst", default=None,
              help="Drain the queues (nothing queued, waiting to be retried or running), then exit.")
@click.option("--grace-s", type=float, help="On SIGTERM, seconds running jobs may finish.")
@click.option("--block-timeout-s", type=float, help="Longest blocking wait on Redis.")
@click.option("--lease-s", type=float, help="Consumer lease; dead workers' jobs return after it.")
@click.option("--worker-id", help="This worker's id.")
@click.option("--with-scheduler/--without-scheduler", default=None,
              help="Also run the periodic-job scheduler.")
@click.option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@handles_errors
def worker(app_spec: str | None, **flags: Any) -> None:
    """Run a worker daemon until SIGTERM/SIGINT (a second signal forces)."""
    settings, app = _daemon_app("worker", app_spec, flags)
    from ..worker import run_worker

    sys.exit(run_worker(app, settings))


@main.command()
@click.option("--data-dir", default=None, help="Data directory (AOF); default ./.redisq.")
@click.option("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: unix socket).")
@handles_errors
def server(data_dir: str | None, port: int | None) -> None:
    """Run the embedded Redis-compatible server in the foreground."""
    import signal

    from ..backend.embedded import RedisServer

    settings = settings_from(data_dir=data_dir)
    srv = RedisServer(settings.data_dir, port=port).start()
    click.echo(f"redisq server ready: REDIS_URL={srv.url}")
    signal.signal(signal.SIGTERM, lambda *_: srv.stop())
    try:
        assert srv.proc is not None
        srv.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


@main.command()
@click.argument("task")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--queue", help="Queue (default: the task's, else 'default').")
@click.option("--delay-s", type=float, help="Run no earlier than this many seconds from now.")
@click.option("--options", "options_json", default="{}",
              help="JSON object of per-call options: timeout_s, retries, expires_s, "
                   "result_ttl_s, job_id, headers (docs/middleware.md).")
@click.option("--app", "app_spec", help=APP_HELP)
@click.option("--url", help=URL_HELP)
@handles_errors
def enqueue(task: str, args_json: str, kwargs_json: str, queue: str | None,
            delay_s: float | None, options_json: str, app_spec: str | None,
            url: str | None) -> None:
    """Queue a job of TASK by name; prints its id. With --app (or REDISQ_APP), TASK must be
    one of that App's tasks and the arguments must fit it (as the web API requires)."""
    args, kwargs = _json_arg("--args", args_json, list), _json_arg("--kwargs", kwargs_json, dict)
    options = _json_arg("--options", options_json, dict) or None
    settings = settings_from(app=app_spec, url=url)
    app = apply_settings(load_app(settings.app, settings.url), settings)
    if settings.app and task not in app.tasks:
        # A worker of that App would dead-letter it: refuse it here, where the typo is seen.
        close = difflib.get_close_matches(task, list(app.tasks), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; it has {len(app.tasks)} task(s): {', '.join(sorted(app.tasks)[:10])}"
            if app.tasks else "; it has none")
        raise click.UsageError(f"unknown task {task!r}: not registered in {settings.app}{hint}")
    try:
        job = app.enqueue(task, args=args, kwargs=kwargs, queue=queue, delay_s=delay_s,
                          options=options)
    except SerializationError as exc:  # a message limit: exit 1 naming the error, as publish
        raise type(exc)(f"task {task!r}: {exc}") from None
    except TypeError as exc:  # the arguments (or options) do not fit: bad usage
        raise click.UsageError(f"bad arguments for task {task!r}: {exc}") from None
    except ValueError as exc:  # an option's value (or a name) out of range
        raise click.UsageError(f"bad options for task {task!r}: {exc}") from None
    click.echo(job.id)


@main.command()
@click.argument("channel")
@click.argument("message")
@click.option("--durable/--no-durable", default=False, help="Also keep it in the channel's stream.")
@click.option("--url", help=URL_HELP)
@handles_errors
def publish(channel: str, message: str, durable: bool, url: str | None) -> None:
    """Publish MESSAGE (JSON) on CHANNEL; prints how many subscribers received it."""
    payload = _json_arg("MESSAGE", message, object)
    settings = settings_from(url=url)
    app = apply_settings(load_app(None, settings.url), settings)
    click.echo(app.publish(channel, payload, durable=durable))


@main.command()
@click.option("--url", help=URL_HELP)
@click.option("--watch", is_flag=True, help="Refresh every --interval-s seconds until Ctrl-C.")
@click.option("--interval-s", type=float, default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handles_errors
def info(url: str | None, watch: bool, interval_s: float, as_json: bool) -> None:
    """Queues (depth, in flight, delayed, dead, succeeded, failed, expired, rate) and live workers."""
    from .stats import format_snapshot, snapshot, with_rates

    app = load_app(None, settings_from(url=url).url)
    prev = None
    while True:
        snap = with_rates(prev, snapshot(app.client))
        text = json.dumps(snap, indent=2) if as_json else format_snapshot(snap, prev is not None)
        if watch:
            click.clear()
        click.echo(text)
        if not watch:
            return
        prev = snap
        time.sleep(interval_s)


@main.command()
@click.option("--queue", "queues", multiple=True, help="Queue(s); default: every known queue.")
@click.option("--job", "job_ids", multiple=True, help="Only these job ids.")
@click.option("--limit", type=int, help="At most this many per queue.")
@click.option("--url", help=URL_HELP)
@handles_errors
def requeue(queues: tuple[str, ...], job_ids: tuple[str, ...], limit: int | None,
            url: str | None) -> None:
    """Bring dead jobs back to their queue; prints how many."""
    app = load_app(None, settings_from(url=url).url)
    total = sum(app.requeue_dead(q, limit, list(job_ids) or None)
                for q in (queues or app.queues()))
    click.echo(total)


@main.command()
@click.option("--queue", "queues", multiple=True, required=True, help="Queue(s) to purge.")
@click.option("--dead", is_flag=True, help="Purge the dead-letter list instead of pending.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--url", help=URL_HELP)
@handles_errors
def purge(queues: tuple[str, ...], dead: bool, yes: bool, url: str | None) -> None:
    """Delete a queue's pending messages (or its dead letters); prints how many."""
    if not yes:
        click.confirm(f"purge {'dead letters of ' if dead else ''}{', '.join(queues)}?",
                      abort=True)
    app = load_app(None, settings_from(url=url).url)
    total = 0
    for q in queues:
        total += app.queue(q).purge(dead=dead)
    click.echo(total)


@main.command()
@click.option("--url", help=URL_HELP)
@click.option("--worker-id", help="Check this worker only (default: every live worker).")
@click.option("--max-age-s", type=float, help="Longest acceptable gap between loop iterations.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True,
              help="Give up on Redis (connect or reply) after this long: exit 1.")
@handles_errors
def health(url: str | None, worker_id: str | None, max_age_s: float | None,
           timeout_s: float) -> None:
    """Exit 0 when Redis answers and every checked worker's loop is progressing, else 1."""
    from dataclasses import replace
    from pathlib import Path

    from ..backend.connection import ConnectionOptions
    from ..backend.registry import Registry, loop_idle_s

    settings = settings_from(url=url, health_max_age_s=max_age_s, worker_id=worker_id)
    # A probe must never start the embedded server it is asked about: for "embedded" it checks
    # the socket a running one would have (RedisServer.socket_path) and fails if none answers.
    target = configured_url(settings.url)
    if is_embedded(target):
        target = f"unix://{Path(settings.data_dir).resolve() / 'redis.sock'}"
    # A probe must answer fast even when Redis hangs (SIGSTOPped, blackholed): no blocking
    # command is sent, so the socket deadline is the probe's own timeout, not block + margin.
    app = App(target, options=replace(ConnectionOptions(), block_timeout_s=0.0,
                                      read_margin_s=timeout_s, connect_timeout_s=timeout_s))
    app.client.ping()
    registry = Registry(app.client)
    workers = registry.workers()
    if worker_id:  # and, under a supervisor (--processes), its children: <id>.0, <id>.1...
        workers = [w for w in workers
                   if w["id"] == worker_id or _child_of(str(w["id"]), worker_id)]
        if not workers:
            click.echo(f"unhealthy: worker {worker_id} is not registered (dead or never started)")
            sys.exit(1)
    now = time.time()
    stale = registry.stale(settings.health_max_age_s, now, workers)
    for w in stale:
        idle = loop_idle_s(w, now)
        click.echo(f"unhealthy: worker {w['id']} loop idle for {idle:.1f} s")
    if stale:
        sys.exit(1)
    click.echo(f"ok: redis reachable, {len(workers)} worker(s) progressing")


def _child_of(worker_id: str, parent_id: str) -> bool:
    """Whether ``worker_id`` names a child of the supervisor with ``parent_id``."""
    head, dot, slot = worker_id.rpartition(".")
    return bool(dot) and head == parent_id and slot.isdigit()


@main.command()
@click.option("--app", "app_spec", help=APP_HELP)
@click.option("--url", help=URL_HELP)
@click.option("--lease-s", type=float, help="Leader lease; a dead leader is replaced after it.")
@click.option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@handles_errors
def scheduler(app_spec: str | None, **flags: Any) -> None:
    """Run the periodic-job scheduler (any number may run: one leads at a time)."""
    settings, app = _daemon_app("scheduler", app_spec, flags)
    if not app.periodic_jobs:
        raise ConfigError(f"{settings.app} registers no @app.periodic jobs")
    from ..worker.scheduler import SchedulerDaemon

    sys.exit(SchedulerDaemon(app, settings).run())


@main.command()
@click.option("--url", help=URL_HELP)
@click.option("--app", "app_spec", help=APP_HELP + " The demo: webapp.tasks:app.")
@click.option("--host", "web_host", help="Address to listen on (REDISQ_WEB_HOST); beyond "
              "loopback it needs REDISQ_WEB_TOKEN (or REDISQ_WEB_ALLOW_INSECURE).")
@click.option("--port", "web_port", type=int, help="Port to listen on (REDISQ_WEB_PORT).")
@handles_errors
def web(url: str | None, app_spec: str | None, web_host: str | None,
        web_port: int | None) -> None:
    """Serve the web app with Flask's development server (production: gunicorn
    'webapp:create_app()')."""
    settings = settings_from(url=url, app=app_spec, web_host=web_host, web_port=web_port)
    logs.setup(settings.log_level, settings.log_format)
    config.check_web(settings, settings.web_host)
    # By name, not by import: the library does not depend on its front end (or on Flask).
    create_app = loading.import_object(WEB_FACTORY, "redisq web (pip install 'redisq[web]')")
    flask_app = create_app({**({"REDISQ_APP": settings.app} if settings.app else {}),
                            **({"url": settings.url} if settings.url else {})})
    flask_app.run(host=settings.web_host, port=settings.web_port, threaded=True)


@main.command()
@click.option("--url", help=URL_HELP)
@click.option("--app", "app_spec", help=APP_HELP)
@click.option("--demo", is_flag=True, help="Run the demo tasks (webapp.tasks:app).")
@click.option("--port", "web_port", type=int, help="Web port (REDISQ_WEB_PORT).")
@handles_errors
def up(url: str | None, app_spec: str | None, demo: bool, web_port: int | None) -> None:
    """Start everything: embedded Redis (unless a URL is set), a prodcons worker, a pubsub
    worker and the web app; Ctrl-C stops them all."""
    settings = settings_from(url=url, app=app_spec, web_port=web_port)
    logs.setup(settings.log_level, settings.log_format)
    if demo and settings.app:
        raise ConfigError("--demo runs the demo app: give it or --app/REDISQ_APP, not both")
    spec = "webapp.tasks:app" if demo else settings.app
    if not spec:
        raise ConfigError("no App to run: --app package.module:attribute (or REDISQ_APP),"
                          " or --demo for the demo tasks")
    config.check_web(settings, settings.web_host)
    from .up import run

    sys.exit(run(settings, spec, announce=click.echo))


def _json_arg(name: str, text: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None
    if kind is not object and not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=name)
    return value


def _app_for(url: str | None) -> App:
    return load_app(None, settings_from(url=url).url)


for _command in jobs_cli.commands(handles_errors, _app_for):
    main.add_command(_command)

if __name__ == "__main__":
    main()
