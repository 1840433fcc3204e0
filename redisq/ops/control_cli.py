"""``redisq pause QUEUE``, ``redisq resume QUEUE`` and ``redisq abort JOB_ID``. Added to
the CLI group by :func:`add_commands`, to which ``cli.py`` passes its helpers (no import
cycle)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..app import App


def add_commands(main: click.Group, app_for: Callable[[str | None], App],
                 handles_errors: Callable[[Callable[..., Any]], Callable[..., Any]],
                 url_help: str) -> None:
    """Register the commands on ``main``; ``app_for(url)`` is the App a command talks to."""

    @main.command()
    @click.argument("queue")
    @click.option("--url", help=url_help)
    @handles_errors
    def pause(queue: str, url: str | None) -> None:
        """Stop workers taking jobs from QUEUE (queued jobs stay; running ones finish)."""
        done = app_for(url).pause(queue)
        click.echo(f"paused {queue}" if done else f"{queue} was already paused")

    @main.command()
    @click.argument("queue")
    @click.option("--url", help=url_help)
    @handles_errors
    def resume(queue: str, url: str | None) -> None:
        """Let workers take jobs from QUEUE again."""
        done = app_for(url).resume(queue)
        click.echo(f"resumed {queue}" if done else f"{queue} was not paused")

    @main.command()
    @click.argument("job_id")
    @click.option("--url", help=url_help)
    @handles_errors
    def abort(job_id: str, url: str | None) -> None:
        """Stop job JOB_ID: cancel it if waiting, else ask its worker to stop it (exit 1 if
        unknown or finished)."""
        handle = app_for(url).job(job_id)
        done = handle.abort() if handle is not None else ""
        if not done:
            click.echo(f"error: no job {job_id} to abort (unknown or finished)", err=True)
            sys.exit(1)
        click.echo(f"{job_id} {done}")
