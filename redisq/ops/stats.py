"""Read-only snapshots of queues and workers for ``redisq info``, the dashboard and metrics."""

from __future__ import annotations

import time
from typing import Any

import redis

from ..backend import index, keys
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
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.zcount(keys.delayed(name), "-inf", now_ms)
    for name, due in zip(names, pipe.execute(), strict=True):
        queues[name]["delayed_due"] = int(due)
    return {"time": time.time(), "queues": queues, "workers": Registry(client).workers(),
            "periodic": periodic_index(client), "memory": memory(client)}


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
        done = _settled(counts)
        before = _settled(prev["queues"].get(name, {})) if prev else done
        counts["rate"] = round((done - before) / span, 2) if span > 0 else 0.0
    return cur


def _settled(counts: dict[str, Any]) -> int:
    return sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "dead", "acked"))


def periodic_index(client: Any) -> list[dict[str, Any]]:
    """The published periodic jobs (name, task, queue, schedule, next_at, last_at, with
    ``_iso`` twins in the job's time zone), soonest first."""
    rows = [r for r in map(index_row, client.hvals(keys.PERIODIC_INDEX)) if r is not None]
    return sorted(rows, key=lambda r: r["next_at"])
