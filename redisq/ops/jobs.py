"""Finding jobs and showing one: what ``redisq jobs``/``redisq job`` and the web app's lists,
search and job page share.

Search reads the bounded status indexes (:mod:`redisq.backend.jobindex`): the newest
``scan_max`` entries in the time range are looked at, at most, whatever the filters; a result
says when that bound cut it short (``truncated``). Records are read through
:class:`~redisq.backend.records.Records` only.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..app import App
from ..backend import jobindex, keys
from ..backend.actions import find_dead_entry
from ..model import DEAD, FAILED, QUEUED, as_text

SCAN_MAX = 2_000  #: index entries a search looks at, at most
PAGE_MAX = 500
#: What a search for "failed" finds: jobs that failed for good, dead-lettered (retries used up,
#: the default) or not (``dead_letter=False``).
FAILURES = (FAILED, DEAD)
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: Record fields that are numbers (text in Redis): they go out as numbers.
NUMERIC = ("attempts", "progress", "enqueued_at", "started_at", "finished_at", "due_at",
           "next_attempt_at")


def parse_since(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``2d``, ``1w`` → seconds (ValueError otherwise)."""
    m = _SINCE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h, 2d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass(frozen=True)
class Query:
    """A search: every field narrows it (None: any)."""

    status: str | None = None  #: "failed" finds dead jobs too (:data:`FAILURES`)
    queue: str | None = None
    task: str | None = None
    id_prefix: str | None = None
    error: str | None = None  #: substring of the error type or message (failures)
    since: float | None = None  #: unix seconds
    until: float | None = None
    limit: int = 50
    offset: int = 0


def numbers(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its numeric fields as numbers, for JSON and the CLI."""
    out = dict(record)
    for name in NUMERIC:
        if name in out:
            try:
                value = float(out[name])
                out[name] = int(value) if value.is_integer() and name == "attempts" else value
            except (TypeError, ValueError):
                pass
    return out


def _matches(q: Query, rec: dict[str, Any]) -> bool:
    if q.task and rec.get("task") != q.task:
        return False
    if q.error:
        text = f"{rec.get('error_type', '')}: {rec.get('error_message', '')}".lower()
        if q.error.lower() not in text:
            return False
    return True


def search(app: App, q: Query, scan_max: int = SCAN_MAX) -> dict[str, Any]:
    """``{"jobs": [...], "next_offset": int|None, "truncated": bool}``: the jobs matching
    ``q``, newest first, one page of ``q.limit`` from ``q.offset``."""
    queues = [q.queue] if q.queue else app.queues()
    statuses = FAILURES if q.status == FAILED else [q.status] if q.status else jobindex.INDEXED
    limit = max(1, min(q.limit, PAGE_MAX))
    rows: list[tuple[float, str, str, str]] = []
    for st in statuses:
        rows += [(at, qu, jid, st) for at, qu, jid in jobindex.read_index(
            app.client, queues, st, q.since, q.until, scan_max + 1)]
    rows.sort(key=lambda r: r[0], reverse=True)
    truncated = len(rows) > scan_max
    rows = rows[:scan_max]
    if q.id_prefix:
        rows = [r for r in rows if r[2].startswith(q.id_prefix)]
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    want = q.offset + limit + 1
    for i in range(0, len(rows), 500):  # records in chunks of one round trip each
        chunk = [r for r in rows[i:i + 500] if (r[1], r[2]) not in seen]
        seen.update((r[1], r[2]) for r in chunk)
        recs = app.records.get_many([(r[1], r[2]) for r in chunk])
        for (at, qu, jid, st), rec in zip(chunk, recs, strict=True):
            if not rec:  # the record expired before its index entry was trimmed
                rec = {"id": jid, "queue": qu, "status": st, "expired": True}
            elif rec.get("status") != st:
                continue  # it moved on (retried, deleted...): listed under its new status
            if _matches(q, rec):
                found.append(summary(rec, at))
        if len(found) >= want:
            break
    page = found[q.offset:q.offset + limit]
    more = len(found) > q.offset + limit
    return {"jobs": page, "next_offset": q.offset + limit if more else None,
            "truncated": truncated}


def summary(rec: dict[str, Any], at: float | None = None) -> dict[str, Any]:
    """What a list row shows of a record."""
    out: dict[str, Any] = {k: rec[k] for k in ("id", "queue", "task", "status", "attempts", "worker",
                               "error_type", "error_message", "args", "expired",
                               "enqueued_at", "started_at", "finished_at") if k in rec}
    if at is not None:
        out["at"] = at
    return numbers(out)


def waiting(app: App, queue: str, what: str, start: int = 0, count: int = 50) -> list[dict[str, Any]]:
    """Queued jobs of ``queue`` in the order they will run (``what="queued"``), or scheduled
    ones by due time (``"scheduled"``: delayed jobs and retries waiting for their time)."""
    client = app.client
    items: list[tuple[Any, float | None]]
    if what == QUEUED:  # producers LPUSH, workers take from the right: next first
        raw = client.lrange(keys.pending(queue), -start - count, -start - 1)
        items = [(m, None) for m in reversed(raw)]
    else:
        delayed = client.zrange(keys.delayed(queue), start, start + count - 1, withscores=True)
        items = [(pair[0], float(pair[1]) / 1000.0) for pair in delayed]
    out = []
    for body, due in items:
        try:
            data = json.loads(body)
            row = {"id": str(data["id"]), "task": str(data["task"]), "queue": queue,
                   "status": what, "attempts": int(data.get("attempt", 1)) - 1,
                   "enqueued_at": float(data.get("enqueued_at") or 0)}
        except Exception:  # not ours, or not JSON (another serializer): shown as unreadable
            row = {"id": "?", "task": "?", "queue": queue, "status": what}
        if due is not None:
            row["due_at"] = due
        out.append(row)
    return out


def resolve(app: App, ident: str) -> tuple[str, str] | None:
    """(queue, job id) of a job id or an unambiguous id prefix (ValueError when several match)."""
    q = app.records.find_queue(ident)
    if q is not None:
        return q, ident
    if len(ident) < 4:
        raise ValueError("give at least 4 characters of the job id")
    hits: set[tuple[str, str]] = set()
    client = app.client
    for queue in app.queues():
        for st in jobindex.INDEXED:
            for member, _ in client.zscan_iter(keys.status_index(queue, st),
                                               match=_glob(ident) + "*", count=1000):
                hits.add((queue, as_text(member)))
        for row in waiting(app, queue, QUEUED, 0, 1000) + waiting(app, queue, "scheduled", 0, 1000):
            if row["id"].startswith(ident):
                hits.add((queue, row["id"]))
    if len(hits) > 1:
        raise ValueError(f"{len(hits)} jobs start with {ident!r}: "
                         + ", ".join(sorted(j for _, j in hits)[:5]))
    return next(iter(hits)) if hits else None


def _glob(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def detail(app: App, queue: str, job_id: str) -> dict[str, Any]:
    """Everything the job page shows: the record (numbers as numbers), the arguments (whole
    when the message is kept, else the record's summary), headers, the workflow, and the
    history: the record's times and every recorded action, oldest first ({} when gone)."""
    rec = app.records.get(queue, job_id)
    if not rec:
        return {}
    out = numbers(rec)
    message = _message(app, queue, job_id, rec)
    out.pop("message", None)
    if message is not None:
        out["args"] = message.get("args", [])
        out["kwargs"] = message.get("kwargs", {})
        for name in ("headers", "workflow", "options"):
            if message.get(name):
                out[name] = message[name]
        out["arguments_complete"] = True
    else:
        out["arguments_complete"] = False
    if out.get("result"):
        with contextlib.suppress(ValueError, RecursionError):
            out["result"] = json.loads(out["result"])
    if isinstance(out.get("headers"), str):  # a finished record keeps them as JSON text
        with contextlib.suppress(ValueError, RecursionError):
            out["headers"] = json.loads(out["headers"])
    out["history"] = history(rec)
    return out


def _message(app: App, queue: str, job_id: str, rec: dict[str, Any]) -> dict[str, Any] | None:
    raw: Any = rec.get("message")
    if not raw and rec.get("status") == "dead":
        entry = find_dead_entry(app.records, queue, job_id)
        raw = json.loads(entry).get("message") if entry else None
    if not raw and rec.get("status") in ("queued", "retrying"):
        from ..backend.records import find_message

        raw = find_message(app.client, queue, job_id)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def history(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's story, oldest first: enqueued, started, finished (or next attempt due), and
    every action taken on it (``history`` lines)."""
    events = []
    for field, what in (("enqueued_at", "enqueued"), ("due_at", "due"), ("started_at", "started"),
                        ("next_attempt_at", "next attempt due"), ("finished_at", rec.get("status"))):
        try:
            at = float(rec[field])
        except (KeyError, TypeError, ValueError):
            continue
        events.append({"at": at, "event": what})
    for line in str(rec.get("history") or "").splitlines():
        try:
            item = json.loads(line)
            events.append({"at": float(item["at"]), "event": str(item["action"]),
                           "from": str(item.get("from", ""))})
        except Exception:  # a line that is not ours: skipped
            continue
    return sorted(events, key=lambda e: e["at"])
