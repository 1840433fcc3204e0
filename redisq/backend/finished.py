"""Finished job records kept as fields of per-queue time buckets ("done buckets").

Why: in Redis 7.0 any key with a TTL costs at least ~180-210 bytes (its dictionary entry, its
expiry entry, the key name, the object header), however little it holds. A succeeded job kept
for ``result_ttl_s`` as a key of its own cost 365 bytes; as a field of a shared hash it costs
its id, its value and a hash entry: 133 bytes (``bench/memory.py``, 50,000 no-op jobs).

How (``lua/settle.lua``, in the step that settles the job): a succeeded job's record, or that
of a job a worker settled as cancelled, is packed into one string (:func:`pack`) and written as
the field ``<job id>`` of the bucket ``redisq:{q}:done:<end ms>``, whose end is the job's
expiry (now + TTL) rounded up to a multiple of the bucket width (:func:`bucket_width_ms`:
a sixteenth of the TTL, between 1 s and 1 h); the bucket expires whole at its end (PEXPIREAT)
and ``redisq:{q}:done`` (a zset) lists the live buckets. The job's own key is deleted in the
same step. So a finished record lives at least its TTL and at most one bucket width longer
(at most 1/16 of the TTL, 1 h for TTLs over 16 h).

What stays a key: records of jobs that wait, run, failed or died (they can be inspected and
requeued whole, and ``failure_ttl_s`` is usually kept longer), records kept whole
(``args_summary_bytes = -1``: the message is binary-safe only in a hash) and records kept for
ever (TTL 0).

The packed form is text fields separated by ``\\x1f`` (ASCII unit separator; JSON escapes it,
so the arguments' summary and the result never contain it):

    progress message, status code, task, enqueued (ms, base 36), started - enqueued (ms),
    finished - started (ms), attempts, worker, arguments' summary, result JSON ('' = null)
    [, headers JSON: only for a job sent with headers, so the others pay nothing]

The settle script prepends the job's last progress message (the only field it reads from the
old record), with any ``\\x1f`` in it replaced by a space, and stores the task and the worker as
short codes: each bucket keeps the names it uses once, in fields that start with ``\\x01``
(``\\x01=<name>`` → code, ``\\x01#<code>`` → name, ``\\x01n`` the last code given; job ids are
printable, so they never start with it). ``lua/record.lua`` puts the names back: this module
only sees records with names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..model import CANCELLED, SUCCEEDED, as_text
from . import keys

SEP = "\x1f"
#: Statuses whose records go to a done bucket, and the one-letter code that stands for each.
CODES = {SUCCEEDED: "s", CANCELLED: "c"}
_STATUS_OF = {code: status for status, code in CODES.items()}
#: A bucket spans this fraction of the TTL, clamped to [MIN_WIDTH_MS, MAX_WIDTH_MS].
WIDTH_DIVISOR = 16
MIN_WIDTH_MS = 1_000
MAX_WIDTH_MS = 3_600_000
_FIELDS = 10
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def bucket_width_ms(ttl_ms: int) -> int:
    """How wide the buckets of records kept ``ttl_ms`` are: a sixteenth of the TTL, so a
    record outlives its TTL by at most that much, at least 1 s (short TTLs still free memory
    within a second of expiring, in few buckets) and at most 1 h (a day's records in ~25)."""
    return max(MIN_WIDTH_MS, min(MAX_WIDTH_MS, ttl_ms // WIDTH_DIVISOR))


def bucket_end_ms(now_ms: int, ttl_ms: int) -> int:
    """The end of the bucket a record finished at ``now_ms`` goes to (what settle.lua computes
    with the server's clock): its expiry rounded up to a multiple of the width."""
    width = bucket_width_ms(ttl_ms)
    return -(-(now_ms + ttl_ms) // width) * width


def _b36(n: int) -> str:
    if n < 0:
        return "-" + _b36(-n)
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS[digit] + out
        if n == 0:
            return out


def _ms(seconds: float | str) -> int:
    return round(float(seconds) * 1000)


def pack(status: str, task: str, enqueued_at: float | str, started_at: float | str,
         finished_at: float | str, attempts: int, worker: str, args: str | None,
         result_json: str, headers_json: str = "") -> str:
    """A finished record as a done bucket's value, without its progress message (settle.lua
    puts that in front: the value starts with the separator). Times (unix seconds, numbers or
    their text) keep milliseconds."""
    enq, start, fin = _ms(enqueued_at), _ms(started_at), _ms(finished_at)
    # (Names are validated elsewhere; a separator in one must still not shift the fields.)
    task, worker = task.replace(SEP, " "), worker.replace(SEP, " ")
    return SEP.join(["", CODES[status], task, _b36(enq), _b36(start - enq), _b36(fin - start),
                     str(attempts), worker, args or "",
                     "" if result_json == "null" else result_json,
                     *((headers_json,) if headers_json else ())])


def unpack(value: bytes | str) -> dict[str, str]:
    """A packed record as the text fields a record hash has (see :mod:`redisq.job`); empty
    for a value that is not one (written by someone else, or a later format)."""
    parts = as_text(value, "replace").split(SEP, _FIELDS)
    if len(parts) not in (_FIELDS, _FIELDS + 1) or parts[1] not in _STATUS_OF:
        return {}
    progress, code, task, enq, start, fin, attempts, worker, args, result = parts[:_FIELDS]
    try:
        enq_ms = int(enq, 36)
        start_ms = enq_ms + int(start, 36)
        fin_ms = start_ms + int(fin, 36)
    except ValueError:
        return {}
    status = _STATUS_OF[code]
    out = {"status": status, "task": task, "enqueued_at": f"{enq_ms / 1000:.3f}",
           "started_at": f"{start_ms / 1000:.3f}", "finished_at": f"{fin_ms / 1000:.3f}",
           "attempts": attempts, "worker": worker}
    if args:
        out["args"] = args
    if progress:
        out["progress_message"] = progress
    if len(parts) > _FIELDS and parts[_FIELDS]:
        out["headers"] = parts[_FIELDS]
    if status == SUCCEEDED:
        out["result"] = result or "null"
    return out


def newest(values: Iterable[bytes | str]) -> dict[str, str]:
    """The latest finished of several packed records of one id (a finished job's id reused
    leaves the old record in its bucket until the bucket expires); empty if none decodes."""
    records = [r for r in map(unpack, values) if r]
    return max(records, key=lambda r: float(r["finished_at"]), default={})


def read_call(queue: str, job_id: str) -> tuple[list[str], list[str]]:
    """The keys and arguments of ``lua/record.lua`` (the one read of a record, sync or
    asyncio) for ``job_id`` in ``queue``."""
    return [keys.job(queue, job_id), keys.done(queue)], [job_id]


def record_from_reply(reply: Any, queue: str, job_id: str) -> dict[str, Any]:
    """What ``lua/record.lua`` answered, as a record (see :func:`complete_record`)."""
    if not reply:
        return {}
    kind, rest = as_text(reply[0]), reply[1:]
    raw = dict(zip(rest[0::2], rest[1::2], strict=True)) if kind == "h" else newest(rest)
    return complete_record(raw, queue, job_id)


def complete_record(raw: Mapping[bytes, bytes] | Mapping[str, str], queue: str,
                    job_id: str) -> dict[str, Any]:
    """A record as text, with what records leave out filled in: the queue (in the key),
    attempts (none yet), progress 1 once succeeded, and the enqueue time of a record written
    by an older version (from the message it copied)."""
    out: dict[str, Any] = {as_text(k): as_text(v, "replace") for k, v in raw.items()}
    if not out:
        return out
    out["id"] = job_id
    out.setdefault("queue", queue)
    out.setdefault("attempts", "0")
    if out.get("status") == "succeeded":
        out.setdefault("progress", "1")
    if "enqueued_at" not in out and "message" in out:
        try:
            at = json.loads(out["message"]).get("enqueued_at")
        # Not JSON (msgpack), not an object, or poison (RecursionError, MemoryError).
        except Exception:
            at = None
        if isinstance(at, (int, float)):
            out["enqueued_at"] = repr(float(at))
    return out


__all__ = ["CODES", "bucket_end_ms", "bucket_width_ms", "complete_record", "newest", "pack",
           "read_call", "record_from_reply", "unpack"]
