"""Bounded job indexes and per-second series: what the dashboard's lists, search and graphs read.

Each queue keeps, per status a job can end an attempt in (``succeeded``, ``failed``, ``dead``,
``retrying``, ``cancelled``, and whatever :data:`redisq.model.STATUSES` gains), a sorted set of
job ids scored by the time they got there (``keys.status_index``). ``settle.lua`` adds the id
and trims the set to ``index_max`` in the step that records the outcome: no extra round trip,
and no index outgrows its cap however many jobs run. The same step drops ids older than the
record's TTL and gives the set that TTL: an index never lists more than the records that
still exist, and an idle queue's indexes expire with its last records. Queued and scheduled
jobs need no index of their own: the pending list and the delayed set are already ordered by
time and bounded by the queue itself.

The same step counts the attempt in a per-minute string of u32 counters (``keys.series``, one
``BITFIELD``): processed at slot ``s`` (the second), failed at ``60 + s``, the pending depth at
120 (sampled by a worker's first settle of the queue in each second, which also sets the TTL),
and an enqueue → start latency histogram from 121 (a few first attempts a second: see
:class:`Sampler`). A minute expires after ``keys.SERIES_TTL_S``, so a queue holds at most ~65
of them, 536 bytes each.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import redis

from ..model import STATUSES, Envelope, as_text
from . import keys
from .bulkread import read_many

#: The statuses a job can be found under in an index (every status but queued and started,
#: which the queue itself lists).
INDEXED = tuple(s for s in STATUSES if s not in ("queued", "started"))
#: Upper bounds (seconds) of the enqueue → start latency histogram.
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0,
                     math.inf)
SERIES_MINUTES = 60  #: the graphs' window


def index_keys(queue: str, status: str, now: float) -> list[str]:
    """``settle.lua``'s KEYS[8..11] for an attempt of ``queue`` that ended in ``status``."""
    return [keys.status_index(queue, status), keys.status_index(queue, "retrying"),
            keys.series(queue, int(now) // 60), keys.pending(queue)]


def latency_bucket(seconds: float) -> int:
    """The index of the latency histogram bucket that counts ``seconds``."""
    for i, bound in enumerate(LATENCY_BUCKETS_S):
        if seconds <= bound:
            return i
    return len(LATENCY_BUCKETS_S) - 1


#: A worker samples one first attempt's enqueue → start latency per queue this often, at most.
LATENCY_SAMPLE_S = 0.05
#: The series string of one minute: u32 counters, big-endian (Redis BITFIELD ``u32 #i``).
SERIES_SLOTS = 121 + len(LATENCY_BUCKETS_S)
_SLOTS = struct.Struct(f">{SERIES_SLOTS}I")


class Sampler:
    """What a settle adds to the series besides its count: a worker's first settle of a queue
    in each second sets the minute's TTL and samples the depth; first attempts add to the
    latency histogram at most every :data:`LATENCY_SAMPLE_S` per queue. Shared by a worker's
    threads (a race samples twice, harmlessly)."""

    def __init__(self) -> None:
        self._second: dict[str, int] = {}
        self._latency: dict[str, float] = {}

    def args(self, now: float, cap: int, env: Envelope, duration_s: float) -> list[Any]:
        """``settle.lua``'s last six ARGV (see its header)."""
        q, sec = env.queue, int(now)
        ttl: int | str = ""
        if self._second.get(q) != sec:
            if len(self._second) > 4096:  # bounded: queue names come from code
                self._second.clear()
            self._second[q] = sec
            ttl = keys.SERIES_TTL_S
        latency: int | str = ""
        if env.attempt == 1 and env.enqueued_at > 0 and \
                now - self._latency.get(q, 0.0) >= LATENCY_SAMPLE_S:
            self._latency[q] = now
            latency = latency_bucket(max(now - duration_s - env.enqueued_at, 0.0))
        return [0 if env.unique is None else 1, int(now * 1000), cap, sec % 60, latency, ttl]


def note_outcome(pipe: Any, queue: str, job_id: str, status: str, now: float, cap: int,
                 leaving: Sequence[str] = (), ttl_s: float = 0.0) -> None:
    """Queue on ``pipe`` what a rare write (cancel, a manual retry, delete) does to the
    indexes that ``settle.lua`` does for attempts: join ``status``'s index (trimmed to ``cap``,
    and to the ids younger than ``ttl_s``, its record's TTL, which the index then expires
    with) and leave those in ``leaving``."""
    for old in leaving:
        pipe.zrem(keys.status_index(queue, old), job_id)
    if status and cap > 0:
        key, now_ms = keys.status_index(queue, status), int(now * 1000)
        pipe.zadd(key, {job_id: now_ms})
        pipe.zremrangebyrank(key, 0, -cap - 1)
        if ttl_s > 0:
            ttl_ms = max(int(ttl_s * 1000), 1)
            pipe.zremrangebyscore(key, "-inf", f"({now_ms - ttl_ms}")
            pipe.pexpire(key, ttl_ms)


def read_index(client: redis.Redis, queues: Sequence[str], status: str, since: float | None,
               until: float | None, limit: int) -> list[tuple[float, str, str]]:
    """The newest ``limit`` (time, queue, job id) of ``status`` across ``queues`` within
    [since, until] (unix s), newest first: one pipelined round trip, ``limit`` per queue."""
    hi = "+inf" if until is None else int(until * 1000)
    lo = "-inf" if since is None else int(since * 1000)
    replies = read_many(client, [("ZRANGE", keys.status_index(q, status), hi, lo, "BYSCORE",
                                  "REV", "LIMIT", 0, limit, "WITHSCORES") for q in queues])
    out: list[tuple[float, str, str]] = []
    for q, rows in zip(queues, replies, strict=True):
        # A raw reply is flat (member, score, ...); a cluster pipeline's is typed pairs.
        pairs = zip(rows[::2], rows[1::2], strict=True) if rows and not isinstance(
            rows[0], (list, tuple)) else rows
        out += [(float(score) / 1000.0, q, as_text(member)) for member, score in pairs]
    out.sort(key=lambda row: row[0], reverse=True)
    return out[:limit]


def index_sizes(client: redis.Redis, queues: Sequence[str]) -> dict[str, dict[str, int]]:
    """How many ids each status index of each queue holds (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for st in INDEXED:
            pipe.zcard(keys.status_index(q, st))
    sizes = iter(pipe.execute() if queues else [])
    return {q: {st: int(next(sizes)) for st in INDEXED} for q in queues}


def read_series(client: redis.Redis, queues: Sequence[str], now: float,
                minutes: int = SERIES_MINUTES) -> dict[str, Any]:
    """The last ``minutes`` of series summed over ``queues``: per second ``processed`` and
    ``failed`` (lists, oldest first, from ``start``), and per minute the depth (None: no
    attempt settled that minute) and the enqueue → start latency p50/p95 (seconds; None for a
    minute without samples). One round trip: a GET per queue and minute."""
    first = int(now) // 60 - minutes + 1
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for m in range(first, first + minutes):
            pipe.get(keys.series(q, m))
    replies = iter(pipe.execute() if queues else [])
    processed, failed = [0] * (minutes * 60), [0] * (minutes * 60)
    depth: list[int | None] = [None] * minutes
    hists: list[list[int]] = [[0] * len(LATENCY_BUCKETS_S) for _ in range(minutes)]
    for _ in queues:
        for i in range(minutes):
            raw = next(replies)
            if not raw:
                continue
            slots = _SLOTS.unpack(bytes(raw[:_SLOTS.size]).ljust(_SLOTS.size, b"\0"))
            for s in range(60):
                processed[i * 60 + s] += slots[s]
                failed[i * 60 + s] += slots[60 + s]
            depth[i] = (depth[i] or 0) + slots[120]
            hists[i] = [a + b for a, b in zip(hists[i], slots[121:], strict=True)]
    return {"start": first * 60, "processed": processed, "failed": failed, "depth": depth,
            "latency_p50": [percentile(h, 0.5) for h in hists],
            "latency_p95": [percentile(h, 0.95) for h in hists]}


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The bucket bound under which a fraction ``q`` of a latency histogram (counts per
    :data:`LATENCY_BUCKETS_S` bucket) lies; None when empty or beyond the last finite bound."""
    total = sum(hist)
    if not total:
        return None
    seen = 0
    for bound, count in zip(LATENCY_BUCKETS_S, hist, strict=True):
        seen += count
        if seen >= q * total:
            return bound if math.isfinite(bound) else None
    return None
