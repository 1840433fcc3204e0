"""``manage.py redisq_worker [options]``: ``redisq worker`` with the project's App.

The options are the ``redisq worker`` command's own (read from it, so they never drift), less
``--app``: the App is the one ``settings.REDISQ`` builds, with every installed app's tasks.
"""

from __future__ import annotations

import argparse
from typing import Any

import click
from django.core.management.base import BaseCommand

from redisq.ops import cli

APP_SPEC = "redisq.contrib.django:app"  # the module's lazy ``app`` attribute: get_app()


def worker_options() -> list[click.Option]:
    """The ``redisq worker`` options this command passes through."""
    return [p for p in cli.worker.params if isinstance(p, click.Option) and p.name != "app_spec"]


def add_option(parser: argparse.ArgumentParser, option: click.Option) -> None:
    """``option`` as an argparse argument: its value stays a string (click converts it)."""
    if option.is_flag:
        parser.add_argument(*option.opts, dest=option.name, action="store_const", const=True,
                            default=None, help=option.help)
        if option.secondary_opts:
            parser.add_argument(*option.secondary_opts, dest=option.name,
                                action="store_const", const=False, help=argparse.SUPPRESS)
        return
    choices = list(option.type.choices) if isinstance(option.type, click.Choice) else None
    parser.add_argument(*option.opts, dest=option.name, default=None, choices=choices,
                        help=option.help)


def worker_argv(values: dict[str, Any]) -> list[str]:
    """The ``redisq worker`` command line for the options given (None: not given)."""
    argv = ["--app", APP_SPEC]
    for option in worker_options():
        value = values.get(option.name or "")
        if value is None:
            continue
        if option.is_flag:
            flags = option.opts if value else option.secondary_opts
            argv.append(flags[0])
        else:
            argv += [option.opts[0], str(value)]
    return argv


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type information
    help = "Run a redisq worker with this project's App (options: see `redisq worker --help`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for option in worker_options():
            add_option(parser, option)

    def handle(self, *args: Any, **options: Any) -> None:
        # The click command itself runs: same settings, logging, exit codes and messages as
        # `redisq worker`; its sys.exit(code) ends manage.py with that code.
        cli.worker.main(args=worker_argv(options), prog_name="manage.py redisq_worker",
                        standalone_mode=True)
