"""The Redis side of jobs: creating, starting, settling and reading job records.

Every write is one Lua step (``enqueue``, ``start``, ``settle``, ``cancel``, ``requeue_dead``)
so a record and its message never disagree.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import keys
from .cluster import is_cluster
from .job import TERMINAL, Envelope
from .queue import Message
from .scripts import Scripts
from .wire import wire_for

log = logging.getLogger("redisq.records")

#: What ``settle`` answers when it did not record the attempt (``lua/settle.lua``):
#: the consumer's epoch ended (the job was recovered for another worker, whose outcome stands),
SETTLE_FENCED = -1
#: or another worker had already finished the job, or retries this attempt (a duplicate).
SETTLE_DUPLICATE = -2


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended; built by the pure ``execute`` step, written by ``settle``."""

    status: str  # succeeded | failed | retrying | dead | cancelled
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    retry_in_s: float = 0.0
    duration_s: float = 0.0
    result_json: str = "null"


def complete_record(raw: dict[bytes, bytes], queue: str, job_id: str) -> dict[str, Any]:
    """A record as text, with what a bulk-enqueued record leaves out (``enqueue_many.lua``
    writes status, task and message only) filled in: the queue, attempts (none yet) and the
    enqueue time (from the message)."""
    out: dict[str, Any] = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
    if not out:
        return out
    out["id"] = job_id
    out.setdefault("queue", queue)
    out.setdefault("attempts", "0")
    if "enqueued_at" not in out and "message" in out:
        try:
            at = json.loads(out["message"]).get("enqueued_at")
        except (ValueError, AttributeError):  # not JSON (msgpack), or not an object
            at = None
        if isinstance(at, (int, float)):
            out["enqueued_at"] = repr(float(at))
    return out


class Records:
    """Job records of every queue on one client."""

    def __init__(self, client: redis.Redis, scripts: Scripts | None = None,
                 result_ttl_s: float = 86_400.0, failure_ttl_s: float = 7 * 86_400.0,
                 dead_max: int = 10_000, events: bool = True) -> None:
        self.client = client
        self.scripts = scripts or Scripts(client)
        self.result_ttl_s = result_ttl_s
        self.failure_ttl_s = failure_ttl_s
        self.dead_max = dead_max
        self.events = events
        self._known_queues: set[str] = set()
        self._wire = wire_for(client)
        #: Whether :meth:`enqueue_fresh` may be used (a cluster routes scripts, not MULTI).
        self.transactions = not is_cluster(client)

    # -- producing ---------------------------------------------------------------------------
    def register_queue(self, queue: str) -> None:
        """Remember the queue name (for ``redisq info`` and id lookups); once per process."""
        if queue not in self._known_queues:
            self.client.sadd(keys.QUEUES, queue)
            self._known_queues.add(queue)

    def enqueue_call(self, env: Envelope, message: bytes, delay_s: float | None,
                     unique_ttl_s: float, fresh_id: bool = False) -> tuple[str, list[str], list[Any]]:
        """The script call that creates ``env``'s record and queues ``message``; with
        ``fresh_id`` (an id just generated) the script skips looking for an existing job."""
        q = env.queue
        ks = [keys.pending(q), keys.delayed(q), keys.job(q, env.id), keys.stats(q)]
        if env.unique is not None:
            ks.append(keys.unique(q, env.unique))
        delay_ms = -1 if delay_s is None else max(int(delay_s * 1000), 0)
        args: list[Any] = [message, env.id, delay_ms, max(int(unique_ttl_s * 1000), 1),
                           env.task, q, env.enqueued_at, 1 if fresh_id else 0]
        return "enqueue", ks, args

    def enqueue_fresh(self, env: Envelope, message: bytes, replicas: int = 0,
                      timeout_s: float = 1.0) -> None:
        """``delay()``'s hot path: a new job (id just generated, not unique, not delayed) needs
        no look-up, so its record and message are written as a MULTI/EXEC transaction instead
        of the ``enqueue`` script: the same atomicity (in memory, in the AOF, on replicas) for
        a third of the server time (measured: EXEC 5.5 µs against EVALSHA 16.5 µs), still one
        round trip. (The exception to "every write is one Lua step": nothing here branches.)"""
        q = env.queue
        wait = [("WAIT", replicas, max(int(timeout_s * 1000), 1))] if replicas else []
        replies = self._wire.execute([
            ("MULTI",),
            ("HSET", keys.job(q, env.id), "status", "queued", "task", env.task, "queue", q,
             "message", message, "attempts", 0, "enqueued_at", repr(env.enqueued_at)),
            ("LPUSH", keys.pending(q), message),
            ("HINCRBY", keys.stats(q), "enqueued", 1),
            ("EXEC",), *wait])
        # An error queued inside (OOM, NOPERM) makes EXEC fail (EXECABORT) or sits in its
        # array; either way the caller gets the error, not a job that was not queued.
        failed = next((r for r in replies[:5] if isinstance(r, Exception)), None)
        if failed is None and isinstance(replies[4], list):
            failed = next((r for r in replies[4] if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        if wait:
            self.scripts.check_replicated(replies[5], replicas, timeout_s)

    # -- reading -----------------------------------------------------------------------------
    def get(self, queue: str, job_id: str) -> dict[str, Any]:
        raw = self.client.hgetall(keys.job(queue, job_id))
        return complete_record(raw, queue, job_id)

    def status(self, queue: str, job_id: str) -> str | None:
        raw = self.client.hget(keys.job(queue, job_id), "status")
        return raw.decode() if raw is not None else None

    def find_queue(self, job_id: str) -> str | None:
        """Which known queue holds a record for ``job_id`` (one round trip)."""
        queues = sorted(q.decode() for q in self.client.smembers(keys.QUEUES))
        if not queues:
            return None
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.exists(keys.job(q, job_id))
        for q, found in zip(queues, pipe.execute(), strict=True):
            if found:
                return q
        return None

    def cancel(self, queue: str, job_id: str) -> bool:
        raw = self.client.hget(keys.job(queue, job_id), "message")
        ks = [keys.job(queue, job_id), keys.pending(queue), keys.delayed(queue)]
        unique = _unique_of(raw)
        if unique is not None:
            ks.append(keys.unique(queue, unique))
        done = self.scripts.run("cancel", ks, [job_id, f"{time.time():.3f}"])
        if done:
            self._publish({"type": "job", "id": job_id, "queue": queue, "status": "cancelled"})
        return bool(done)

    # -- working -----------------------------------------------------------------------------
    def start(self, worker_id: str, jobs: Sequence[Envelope], consumer_id: str = "",
              tokens: Sequence[str] | None = None) -> list[str | None]:
        """Mark reserved jobs started (one round trip); returns each one's previous status,
        or None for a job reserved under an epoch of ``consumer_id`` that has ended
        (``tokens``: each job's; see :mod:`redisq.leases`): it was not marked, and must not
        run."""
        if not jobs:
            return []
        tokens = tokens or [""] * len(jobs)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, env in enumerate(jobs):
            groups.setdefault((env.queue, tokens[i]), []).append(i)
        before: list[str | None] = [""] * len(jobs)
        now = f"{time.time():.3f}"
        calls = []
        for (q, token), idx in groups.items():
            calls.append(("start", [keys.epochs(q), *(keys.job(q, jobs[i].id) for i in idx)],
                          [worker_id, now, consumer_id, token, *(jobs[i].attempt for i in idx)]))
        for idx, res in zip(groups.values(), self.scripts.run_many(calls), strict=True):
            if isinstance(res, int):  # -1: that epoch ended
                for i in idx:
                    before[i] = None
                continue
            for i, status in zip(idx, res, strict=True):
                before[i] = status.decode() if isinstance(status, bytes) else str(status)
        return before

    def settle_call(self, consumer_id: str, msg: Message, env: Envelope, outcome: Outcome,
                    worker_id: str, serializer_dumps: Any) -> tuple[str, list[str], list[Any]]:
        """The script call that records ``outcome`` and moves ``msg`` accordingly; it is
        refused (:data:`SETTLE_FENCED`) when the epoch ``msg`` was reserved under has ended,
        and never overwrites another worker's outcome (:data:`SETTLE_DUPLICATE`)."""
        q = msg.queue
        ks = [keys.processing(q, consumer_id), keys.job(q, env.id), keys.stats(q),
              keys.delayed(q), keys.dead(q), keys.epochs(q)]
        if env.unique is not None:
            ks.append(keys.unique(q, env.unique))
        now = time.time()
        # Attempts and start time again: a job taken by a blocking move is marked started
        # after it was handed to a thread, and a fast one may settle first (start.lua then
        # leaves the finished record alone), so the settle writes them too.
        fields: list[Any] = ["status", outcome.status, "worker", worker_id,
                             "attempts", env.attempt, "started_at",
                             f"{now - outcome.duration_s:.3f}"]
        extra, ttl_s, delay_ms = b"", 0.0, 0
        if outcome.status == "succeeded":
            fields += ["result", outcome.result_json, "finished_at", f"{now:.3f}",
                       "progress", "1"]
            ttl_s = self.result_ttl_s
        elif outcome.status == "cancelled":
            fields += ["finished_at", f"{now:.3f}"]
            ttl_s = self.result_ttl_s
        else:
            fields += ["error_type", outcome.error_type, "error_message", outcome.error_message,
                       "traceback", outcome.traceback]
            if outcome.status == "retrying":
                delay_ms = int(outcome.retry_in_s * 1000)
                extra = serializer_dumps(env.next_attempt().to_dict())
                # The record names the message that waits, so cancel() can take it out.
                fields += ["next_attempt_at", f"{now + outcome.retry_in_s:.3f}", "message", extra]
            else:
                fields += ["finished_at", f"{now:.3f}"]
                ttl_s = self.failure_ttl_s
                if outcome.status == "dead":
                    extra = dead_entry(msg.body, outcome.error_type, outcome.error_message,
                                       env.id, env.task)
        event = b""
        if self.events:
            event = json.dumps({"type": "job", "id": env.id, "queue": q, "task": env.task,
                                "status": outcome.status, "duration_s": round(outcome.duration_s, 6),
                                "error_type": outcome.error_type}).encode()
        timed = outcome.status in ("succeeded", "failed", "dead", "retrying") and env.task != ""
        args = [outcome.status, msg.body, extra, delay_ms, int(ttl_s * 1000), env.id,
                self.dead_max, keys.EVENTS_CHANNEL if self.events else "", event,
                duration_field(outcome.duration_s) if timed else "",
                f"{outcome.duration_s:.6f}", consumer_id, msg.token or "", worker_id, env.attempt,
                *fields]
        return "settle", ks, args

    def settle_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        return self.scripts.run_many(calls)

    def report_progress(self, queue: str, job_id: str, fraction: float, message: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.job(queue, job_id), mapping={"progress": f"{fraction:.4f}",
                                                      "progress_message": message})
        if self.events:
            pipe.publish(keys.EVENTS_CHANNEL, json.dumps(
                {"type": "progress", "id": job_id, "queue": queue, "progress": fraction,
                 "message": message}))
        pipe.execute()

    # -- dead letters ------------------------------------------------------------------------
    def requeue_dead(self, queue: str, limit: int | None = None,
                     job_ids: Sequence[str] | None = None) -> int:
        """Bring dead jobs back (all, the first ``limit``, or those in ``job_ids``)."""
        moved = 0
        for entry in self.client.lrange(keys.dead(queue), 0, -1):
            if limit is not None and moved >= limit:
                break
            try:
                data = json.loads(entry)
                env = Envelope.from_dict(json.loads(data["message"]))
            except (ValueError, KeyError, TypeError):
                continue  # malformed messages cannot run; they stay for inspection/purge
            if job_ids is not None and env.id not in job_ids:
                continue
            fresh = json.dumps({**env.to_dict(), "attempt": 1}, separators=(",", ":")).encode()
            moved += int(self.scripts.run("requeue_dead", [keys.dead(queue), keys.pending(queue),
                                          keys.job(queue, env.id), keys.stats(queue)],
                                          [entry, fresh]))
        return moved

    def _publish(self, event: dict[str, Any]) -> None:
        if self.events:
            self.client.publish(keys.EVENTS_CHANNEL, json.dumps(event))


#: Upper bounds (seconds) of the job duration histogram kept in each queue's stats hash.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      300.0, float("inf"))


def duration_field(seconds: float) -> str:
    """The stats-hash field counting attempts that took at most the bucket's bound."""
    for bound in DURATION_BUCKETS_S:
        if seconds <= bound:
            return f"dur:{bound:g}"
    return "dur:inf"


def dead_entry(body: bytes, error_type: str, error_message: str, job_id: str = "",
               task: str = "") -> bytes:
    """The JSON stored in a dead-letter list: why, when, and the original message."""
    return json.dumps({"job_id": job_id, "task": task, "error_type": error_type,
                       "reason": error_message, "failed_at": round(time.time(), 3),
                       "message": body.decode("utf-8", "backslashreplace")}).encode()


def _unique_of(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("unique")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


__all__ = ["SETTLE_DUPLICATE", "SETTLE_FENCED", "TERMINAL", "Outcome", "Records", "dead_entry"]
