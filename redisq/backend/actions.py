"""What an operator does to one job (the dashboard's buttons, ``redisq retry|cancel|delete``):
retry it now, cancel it, delete it. Each is one Lua step (``retry_now``, ``cancel``,
``delete_job``); each appends a line to the job's ``history`` field (JSON per line: time,
action, status before), which the job page shows beside the times the record keeps.

These are rare writes: finding a waiting job's message reads its queue (``find_message``), as
``cancel`` always did.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .. import model
from ..model import Envelope, as_bytes
from . import jobindex, keys
from .records import Records, find_message

#: Statuses "retry now" accepts: finished without success, or waiting for the next attempt.
RETRYABLE = frozenset({model.FAILED, model.DEAD, model.RETRYING, model.CANCELLED,
                       model.EXPIRED, model.ABORTED})
#: Dead-letter entries read while looking for one job's.
DEAD_SCAN = 10_000


class ActionRefused(Exception):
    """The job is not in a state the action applies to (the message says why)."""


def history_line(action: str, before: str, **extra: Any) -> str:
    return json.dumps({"at": round(time.time(), 3), "action": action, "from": before, **extra},
                      separators=(",", ":"))


def append_history(records: Records, queue: str, job_id: str, line: str) -> None:
    """Append one line to a job's history (:meth:`Records.note`)."""
    records.note(queue, job_id, line)


def find_dead_entry(records: Records, queue: str, job_id: str) -> bytes | None:
    """The dead-letter entry of ``job_id`` in ``queue``'s dead list (newest first), or None."""
    needle = json.dumps(job_id).encode()
    for raw in records.client.lrange(keys.dead(queue), 0, DEAD_SCAN - 1):
        if needle in raw:
            try:
                if json.loads(raw).get("job_id") == job_id:
                    return as_bytes(raw)
            except Exception:  # anyone may LPUSH anything: not an entry
                continue
    return None


def message_of(records: Records, queue: str, job_id: str, record: dict[str, Any]) -> bytes | None:
    """The job's whole message: kept in a failed record, in the dead letter of a dead job, in
    the queue for a waiting one; None when only a summary of the arguments was kept."""
    if record.get("message"):
        return str(record["message"]).encode()
    status = record.get("status")
    if status == model.DEAD:
        entry = find_dead_entry(records, queue, job_id)
        if entry is not None:
            inner = json.loads(entry).get("message")
            return inner.encode() if isinstance(inner, str) else None
        return None
    if status in (model.QUEUED, model.RETRYING):
        return find_message(records.client, queue, job_id)
    return None


def retry_now(records: Records, queue: str, job_id: str) -> None:
    """Queue the job again now, under the same id and record (attempts go on counting);
    raises :class:`ActionRefused` when it is not failed, dead, retrying or cancelled."""
    record = records.get(queue, job_id)
    status = record.get("status", "")
    if status not in RETRYABLE:
        raise ActionRefused(f"job {job_id} is {status or 'gone'}; only "
                            f"{', '.join(sorted(RETRYABLE))} jobs can be retried")
    taken, message = b"", None
    if status == model.RETRYING:
        message = find_message(records.client, queue, job_id)
        taken = message or b""
    elif status == model.DEAD:
        taken = find_dead_entry(records, queue, job_id) or b""
        inner = json.loads(taken).get("message") if taken else None
        message = inner.encode() if isinstance(inner, str) else None
    else:
        message = message_of(records, queue, job_id, record)
    if message is None:
        raise ActionRefused(f"job {job_id}'s message is not kept (only a summary of its "
                            "arguments: args_summary_bytes); enqueue a new job instead")
    try:  # a message that cannot run (a buried poison message too) is not queued again
        data = json.loads(message)
        Envelope.from_dict(data)
    except (ValueError, RecursionError) as exc:  # BadMessage is a ValueError
        raise ActionRefused(f"job {job_id}'s message cannot run ({exc}); it is not "
                            "queued again") from None
    # A retrying job's waiting message goes as it is; a finished one starts its tries afresh
    # (as requeue_dead does); the history keeps what happened before.
    fresh = message if status == model.RETRYING else json.dumps(
        {**data, "attempt": 1, "queue": queue}, separators=(",", ":")).encode()
    done = records.scripts.run("retry_now", [keys.job(queue, job_id), keys.pending(queue),
                               keys.delayed(queue), keys.dead(queue),
                               keys.status_index(queue, status)],
                               [status, fresh, taken, job_id, history_line("retry", status)])
    if not done:
        raise ActionRefused(f"job {job_id} changed meanwhile (it is "
                            f"{records.status(queue, job_id) or 'gone'}); look again")


def cancel(records: Records, queue: str, job_id: str) -> None:
    """Cancel a queued or retrying job (its message leaves the queue); recorded and indexed."""
    before = records.status(queue, job_id) or ""
    if not records.cancel(queue, job_id):
        raise ActionRefused(f"job {job_id} is {records.status(queue, job_id) or 'gone'}; only "
                            "queued or retrying jobs can be cancelled")
    append_history(records, queue, job_id, history_line("cancel", before))  # (indexed by it)


def delete(records: Records, queue: str, job_id: str) -> None:
    """Delete a job that is not running: its record, message and index entries."""
    record = records.get(queue, job_id)
    status = record.get("status", "")
    waiting = find_message(records.client, queue, job_id) if status in (
        model.QUEUED, model.RETRYING) else None
    dead = find_dead_entry(records, queue, job_id) if status in (model.DEAD, "") else None
    res = records.scripts.run("delete_job", [
        keys.job(queue, job_id), keys.pending(queue), keys.delayed(queue), keys.dead(queue),
        keys.done(queue),
        *(keys.status_index(queue, s) for s in jobindex.INDEXED)],
        [job_id, waiting or b"", dead or b""])
    if res == -1:
        raise ActionRefused(f"job {job_id} is running; cancel or abort it first")
    if res == 0:
        raise ActionRefused(f"no job {job_id} in {queue}")
