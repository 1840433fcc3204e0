"""Read-only snapshots of queues and workers for ``redisq info``, the dashboard and metrics,
and the dashboard's other reads (recent failures, running jobs): the web app reads Redis
through here, never by key."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import redis

from ..backend import control, index, keys, workflows
from ..backend.bulkread import read_many
from ..backend.registry import Registry
from ..broker.queue import counts_many
from ..periodic import index_row


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every known queue's counts (incl. ``delayed`` jobs and ``delayed_due``, those of them
    whose time has come on Redis's clock, i.e. waiting for a worker or scheduler to promote
    them), every live worker and the next run of each periodic job, with the time they were
    read."""
    names = index.known(client)
    queues = counts_many(client, names)
    sec, usec = client.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000  # the delayed zset's scores: Redis's clock, ms
    dues = read_many(client, [("ZCOUNT", keys.delayed(name), "-inf", now_ms) for name in names])
    for name, due in zip(names, dues, strict=True):
        queues[name]["delayed_due"] = int(due)
    paused = control.paused(client)  # workers take nothing from these
    for name, counts in queues.items():
        counts["paused"] = name in paused  # (and "throttled": starts refused by a limit)
    return {"time": time.time(), "queues": queues, "workers": Registry(client).workers(),
            "periodic": periodic_index(client), "memory": memory(client),
            "paused": sorted(paused), "workflows": workflows.progress(client, names)}


def memory(client: redis.Redis) -> dict[str, Any] | None:
    """Redis's memory against its ``maxmemory`` (``full``: writes that need memory are
    refused, under ``noeviction``); None when INFO is refused (an ACL) or not one server's."""
    try:
        info = client.info("memory")
    except redis.ResponseError:
        return None
    if "used_memory" not in info:  # a cluster client answers per node
        return None
    used, limit = int(info["used_memory"]), int(info.get("maxmemory") or 0)
    return {"used_bytes": used, "max_bytes": limit, "policy": info.get("maxmemory_policy"),
            "full": bool(limit) and used >= limit}


def with_rates(prev: dict[str, Any] | None, cur: dict[str, Any]) -> dict[str, Any]:
    """Add ``rate`` (jobs settled per second) to each queue of ``cur`` from the change since
    ``prev``; 0.0 when there is no earlier snapshot."""
    span = (cur["time"] - prev["time"]) if prev else 0.0
    for name, counts in cur["queues"].items():
        done = settled_jobs(counts)
        before = settled_jobs(prev["queues"].get(name, {})) if prev else done
        counts["rate"] = round((done - before) / span, 2) if span > 0 else 0.0
    return cur


def settled_jobs(counts: dict[str, Any]) -> int:
    """Jobs (and messages) a queue's counters say were settled: its rate's numerator."""
    return sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "dead", "expired", "acked"))


def periodic_index(client: Any) -> list[dict[str, Any]]:
    """The published periodic jobs (name, task, queue, schedule, next_at, last_at, with
    ``_iso`` twins in the job's time zone), soonest first."""
    rows = [r for r in map(index_row, client.hvals(keys.PERIODIC_INDEX)) if r is not None]
    return sorted(rows, key=lambda r: r["next_at"])


_FAILURE_FIELDS = ("job_id", "task", "error_type", "reason", "failed_at")
_RUNNING_FIELDS = ("status", "worker", "started_at", "progress", "progress_message")


def recent_failures(client: Any, queues: list[str], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters of ``queues`` (job, task, error, reason, when)."""
    if not queues:
        return []
    failures = []
    lists = read_many(client, [("LRANGE", keys.dead(q), 0, limit - 1) for q in queues])
    for q, entries in zip(queues, lists, strict=True):
        for raw in entries:
            entry = _dead_entry(raw)
            if entry is not None:
                failures.append({"queue": q, **entry})
    failures.sort(key=lambda f: f["failed_at"], reverse=True)
    return failures[:limit]


def _dead_entry(raw: bytes) -> dict[str, Any] | None:
    """A dead-letter entry's fields, typed; None for one that is not an entry (anyone who can
    write to Redis can LPUSH anything: it must not take the dashboard down)."""
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    out: dict[str, Any] = {k: _text(entry.get(k)) for k in _FAILURE_FIELDS}
    out["failed_at"] = _float(entry.get("failed_at"))
    return out


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)[:200]


def _float(value: Any) -> float:
    """A number from stored data, 0.0 for anything that is not a finite one."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def running_jobs(client: Any, queues: list[str], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` started jobs, read from the queues' in-flight lists and the job records: live,
    where the workers' registry entries are only as fresh as their last heartbeat."""
    consumers = read_many(client, [("SMEMBERS", keys.consumers(q)) for q in queues])
    lists = [(q, m.decode()) for q, members in zip(queues, consumers, strict=True)
             for m in members]
    held = read_many(client, [("LRANGE", keys.processing(q, member), 0, limit - 1)
                              for q, member in lists])
    jobs = []
    for (q, _), messages in zip(lists, held, strict=True):
        for raw in messages:
            try:
                message = json.loads(raw)
                jobs.append({"id": str(message["id"]), "task": str(message["task"]), "queue": q})
            except (ValueError, KeyError, TypeError, RecursionError):
                continue  # a malformed message: the worker dead-letters it
    running = []
    fields = read_many(client, [("HMGET", keys.job(job["queue"], job["id"]), *_RUNNING_FIELDS)
                                for job in jobs])
    for job, values in zip(jobs, fields, strict=True):
        record = {k: v.decode("utf-8", "replace") if v is not None else None
                  for k, v in zip(_RUNNING_FIELDS, values, strict=True)}
        if record["status"] != "started":
            continue  # reserved, not yet started
        running.append({**job, "worker": record["worker"] or "",
                        "started_at": _float(record["started_at"]),
                        "progress": _float(record["progress"]),
                        "progress_message": record["progress_message"] or ""})
    return sorted(running, key=lambda j: j["started_at"])[:limit]


def format_snapshot(snap: dict[str, Any], with_rate: bool) -> str:
    """A :func:`snapshot` as the text ``redisq info`` shows (``with_rate``: a rate column)."""
    lines = [f"{'queue':<20}{'depth':>9}{'in flight':>11}{'delayed':>9}{'dead':>7}"
             f"{'succeeded':>11}{'failed':>8}{'expired':>9}"
             + (f"{'rate/s':>9}" if with_rate else "")]
    for name, c in snap["queues"].items():
        lines.append(f"{name:<20}{c['depth']:>9}{c['in_flight']:>11}{c['delayed']:>9}"
                     f"{c['dead_letters']:>7}{c.get('succeeded', 0):>11}{c.get('failed', 0):>8}"
                     f"{c.get('expired', 0):>9}" + (f"{c['rate']:>9}" if with_rate else ""))
    if snap.get("paused"):
        lines.append("paused (workers take nothing): " + ", ".join(snap["paused"]))
    throttled = {n: c["throttled"] for n, c in snap["queues"].items() if c.get("throttled")}
    if throttled:  # starts a rate or concurrency limit sent back to the delayed set
        lines.append("throttled starts: " + ", ".join(f"{n}={k}" for n, k in throttled.items()))
    due = {n: c["delayed_due"] for n, c in snap["queues"].items() if c.get("delayed_due")}
    if due:
        lines.append("delayed jobs due: " + ", ".join(f"{n}={k}" for n, k in due.items()))
    for p in snap.get("periodic", []):
        lines.append(f"periodic {p['name']:<30} {p['schedule']:<28} next {p['next_at_iso']}"
                     f" last {p.get('last_at_iso') or '-'}")
    mem = snap.get("memory")
    if mem and mem["max_bytes"]:
        lines.append(f"redis memory: {mem['used_bytes'] / 2**20:.1f} MiB of maxmemory "
                     f"{mem['max_bytes'] / 2**20:.1f} MiB ({mem['policy']})"
                     + (" FULL: enqueues are refused" if mem["full"] else ""))
    lines += format_workflows(snap.get("workflows"))
    lines.append("")
    lines.append(f"{len(snap['workers'])} worker(s)")
    for w in snap["workers"]:
        where = ",".join(w.get("queues") or w.get("channels") or [])
        lines.append(f"  {w['id']:<32} {w.get('mode', '?'):<9} {where:<20} "
                     f"processed={w.get('processed', 0)} failed={w.get('failed', 0)} "
                     f"running={len(w.get('current') or [])}"
                     + (" REDIS FULL (maxmemory)" if w.get("redis_full") is True else ""))
    return "\n".join(lines)


def format_workflows(wf: dict[str, Any] | None) -> list[str]:
    """``redisq info``'s workflow lines: groups in progress, jobs others wait on."""
    if not wf or not (wf["groups_active"] or wf["awaited_jobs"]):
        return []
    lines = [f"workflows: {wf['groups_active']} group(s) in progress, {wf['awaited_jobs']} "
             "job(s) awaited by deferred jobs (depends_on)"]
    for g in wf["groups"]:
        lines.append(f"  group {g['id']} on {g['queue']}: {g['done']}/{g['total']} ended"
                     + (f", then {g['callback']}" if g["callback"] else ""))
    return lines
