"""The job commands of ``redisq``: ``jobs`` (search), ``job`` (one job, by id or id prefix),
``retry``, ``cancel`` and ``delete``. :func:`commands` builds them with the CLI's own error
handling and App loading (passed in: this module does not import ``cli``, which imports it)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from ..app import App
from ..backend import actions
from ..backend.jobindex import INDEXED
from . import jobs

URL_HELP = "Redis URL (else REDISQ_URL / REDIS_URL, else redis://127.0.0.1:6379/0)."
TIME_FIELDS = ("at", "enqueued_at", "due_at", "started_at", "finished_at", "next_attempt_at")


def iso(ts: float) -> str:
    """A unix time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_iso_times(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in TIME_FIELDS:
        if isinstance(out.get(name), (int, float)):
            out[name] = iso(out[name])
    if isinstance(out.get("history"), list):
        out["history"] = [with_iso_times(e) for e in out["history"]]
    return out


def _find(app: App, ident: str) -> tuple[str, str]:
    found = jobs.resolve(app, ident)
    if found is None:
        click.echo(f"error: no job {ident}", err=True)
        sys.exit(1)
    return found


def commands(guard: Callable[[Callable[..., Any]], Callable[..., Any]],
             app_for: Callable[[str | None], App]) -> list[click.Command]:
    """The job commands; ``guard`` maps errors to exit codes, ``app_for(url)`` makes the App."""

    @click.command()
    @click.argument("job_id")
    @click.option("--url", help=URL_HELP)
    @guard
    def job(job_id: str, url: str | None) -> None:
        """Show one job (JOB_ID or an unambiguous prefix of it) as JSON: its record, numbers as
        numbers, times in ISO 8601, arguments and history (exit 1 if unknown)."""
        app = app_for(url)
        queue, full = _find(app, job_id)
        shown = jobs.detail(app, queue, full)
        if not shown:
            click.echo(f"error: no job {job_id}", err=True)
            sys.exit(1)
        click.echo(json.dumps(with_iso_times(shown), indent=2, ensure_ascii=False))

    @click.command("jobs")
    @click.option("--status", type=click.Choice(sorted((*INDEXED, "queued", "scheduled"))),
                  help="Only jobs with this status ('failed': dead ones too).")
    @click.option("--queue", help="Only this queue (default: every known queue).")
    @click.option("--task", help="Only this task.")
    @click.option("--error", "error", help="Error type or message contains this (failures).")
    @click.option("--since", help="Only jobs of the last 30s, 15m, 1h, 2d...")
    @click.option("--limit", type=click.IntRange(1, jobs.PAGE_MAX), default=50, show_default=True)
    @click.option("--offset", type=click.IntRange(0), default=0)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @click.option("--url", help=URL_HELP)
    @guard
    def jobs_cmd(status: str | None, queue: str | None, task: str | None, error: str | None,
                 since: str | None, limit: int, offset: int, as_json: bool,
                 url: str | None) -> None:
        """List jobs, newest first (from the bounded status indexes; queued and scheduled from
        the queues themselves, next first)."""
        app = app_for(url)
        if status in ("queued", "scheduled"):
            rows = [r for q in ([queue] if queue else app.queues())
                    for r in jobs.waiting(app, q, status, offset, limit)
                    if not task or r["task"] == task][:limit]
        else:
            start = time.time() - jobs.parse_since(since) if since else None
            rows = jobs.search(app, jobs.Query(status=status, queue=queue, task=task, error=error,
                                               since=start, limit=limit, offset=offset))["jobs"]
        for row in rows:
            shown = with_iso_times(row)
            if as_json:
                click.echo(json.dumps(shown, ensure_ascii=False))
            else:
                err = f"  {row.get('error_type', '')}: {row.get('error_message', '')}" \
                    if row.get("error_type") else ""
                when = shown.get("at") or shown.get("due_at") or shown.get("enqueued_at") or ""
                click.echo(f"{row['id']}  {row.get('queue', '')}  {row.get('task', '?')}  "
                           f"{row.get('status', '')}  {when}{err}")

    @click.command()
    @click.argument("job_id", required=False)
    @click.option("--all-failed", is_flag=True, help="Every failed and dead job (indexed).")
    @click.option("--queue", help="With --all-failed: this queue only.")
    @click.option("--url", help=URL_HELP)
    @guard
    def retry(job_id: str | None, all_failed: bool, queue: str | None, url: str | None) -> None:
        """Run a failed, dead, retrying or cancelled job again now (same id, history kept);
        prints how many were queued."""
        if bool(job_id) == all_failed:
            raise click.UsageError("give a JOB_ID or --all-failed (not both)")
        app = app_for(url)
        if job_id:
            actions.retry_now(app.records, *_find(app, job_id))
            click.echo(1)
            return
        done = 0
        for status in ("failed",):  # failed and dead (jobs.FAILURES)
            while True:  # each page is re-read: retried jobs leave the index
                page = jobs.search(app, jobs.Query(status=status, queue=queue, limit=500))["jobs"]
                page = [j for j in page if not j.get("expired")]
                before = done
                for row in page:
                    try:
                        actions.retry_now(app.records, row["queue"], row["id"])
                        done += 1
                    except actions.ActionRefused as exc:
                        click.echo(f"skipped {row['id']}: {exc}", err=True)
                if len(page) < 500 or done == before:
                    break
        click.echo(done)

    @click.command()
    @click.argument("job_id")
    @click.option("--url", help=URL_HELP)
    @guard
    def cancel(job_id: str, url: str | None) -> None:
        """Cancel a queued or retrying job (exit 1 if it already started or finished)."""
        app = app_for(url)
        actions.cancel(app.records, *_find(app, job_id))
        click.echo("cancelled")

    @click.command()
    @click.argument("job_id")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--url", help=URL_HELP)
    @guard
    def delete(job_id: str, yes: bool, url: str | None) -> None:
        """Delete a job that is not running: record, waiting message, index entries."""
        app = app_for(url)
        queue, full = _find(app, job_id)
        if not yes:
            click.confirm(f"delete job {full} of {queue}?", abort=True)
        actions.delete(app.records, queue, full)
        click.echo("deleted")

    return [job, jobs_cmd, retry, cancel, delete]
