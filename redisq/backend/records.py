"""The Redis side of jobs: creating, starting, settling and reading job records.

Every write is one Lua step (``enqueue``, ``start``, ``settle``, ``cancel``, ``requeue_dead``)
so a record and its message never disagree.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis

from .. import limits
from ..model import Envelope, Message, Outcome, as_text
from ..serializers import JSONSerializer, compact_json
from . import finished, index, keys, workflows
from .cluster import is_cluster
from .dead import dead_entry, dead_message
from .finished import complete_record
from .jobindex import Sampler, index_keys, note_outcome
from .pressure import is_oom
from .scripts import Scripts
from .wire import wire_for

log = logging.getLogger("redisq.records")

#: What ``settle`` answers when it did not record the attempt (``lua/settle.lua``):
#: the consumer's epoch ended (the job was recovered for another worker, whose outcome stands),
SETTLE_FENCED = -1
#: or another worker had already finished the job, or retries this attempt (a duplicate).
SETTLE_DUPLICATE = -2


class Records:
    """Job records of every queue on one client."""

    #: Dead letters whose message is larger are not requeued (set by ``App.make_records``).
    max_message_bytes = limits.DEFAULT_MAX_MESSAGE_BYTES
    #: Whether succeeded (and worker-cancelled) records kept for a time go to done buckets
    #: (:mod:`redisq.backend.finished`); False keeps each one a key of its own, as before.
    done_buckets = True
    #: Most ids each per-queue status index keeps; 0: no indexes, no series (``index_max``).
    index_max = 10_000

    def __init__(self, client: redis.Redis, scripts: Scripts | None = None,
                 result_ttl_s: float = 86_400.0, failure_ttl_s: float = 7 * 86_400.0,
                 dead_max: int = 10_000, events: bool = True,
                 args_summary_bytes: int = 48) -> None:
        self.client = client
        self.scripts = scripts or Scripts(client)
        self.result_ttl_s = result_ttl_s
        self.failure_ttl_s = failure_ttl_s
        self.dead_max = dead_max
        self.events = events
        self.args_summary_bytes = args_summary_bytes
        self._index = index.ProducerIndex(client)
        self._wire = wire_for(client)
        self._sampler = Sampler()  # which settles sample the graphs' series
        #: Whether :meth:`enqueue_fresh` may be used (a cluster routes scripts, not MULTI).
        self.transactions = not is_cluster(client)

    # -- producing ---------------------------------------------------------------------------
    def register_queue(self, queue: str) -> None:
        """Remember the queue name (for ``redisq info`` and id lookups) and that it is in use;
        a round trip on its first write and then once per ``index.REFRESH_S``."""
        self._index.register(queue)

    def enqueue_call(self, env: Envelope, message: bytes, delay_s: float | None,
                     unique_ttl_s: float, fresh_id: bool = False) -> tuple[str, list[str], list[Any]]:
        """The script call that creates ``env``'s record and queues ``message``; with
        ``fresh_id`` (an id just generated) the script skips looking for an existing job."""
        q = env.queue
        ks = [keys.pending(q), keys.delayed(q), keys.job(q, env.id), keys.stats(q)]
        if env.unique is not None:
            ks.append(keys.unique(q, env.unique))
        delay_ms = -1 if delay_s is None else max(int(delay_s * 1000), 0)
        # The unique key's lease starts now, the job's life when it is due.
        lease_ms = max(int(unique_ttl_s * 1000), 1) + max(delay_ms, 0)
        args: list[Any] = [message, env.id, delay_ms, lease_ms, env.task, q, env.enqueued_at,
                           1 if fresh_id else 0, keys.job_prefix(q),
                           limits.headers_json(env.headers) if env.headers else ""]
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
            ("HSET", keys.job(q, env.id), "status", "queued", "task", env.task,
             "enqueued_at", repr(env.enqueued_at),
             *(("headers", limits.headers_json(env.headers)) if env.headers else ())),
            ("LPUSH", keys.pending(q), message),
            ("HINCRBY", keys.stats(q), "enqueued", 1),
            ("EXEC",), *wait])
        # An error queued inside (OOM, NOPERM) makes EXEC fail (EXECABORT) or sits in its
        # array; either way the caller gets the error, not a job that was not queued.
        failed = next((r for r in replies[:5] if isinstance(r, Exception)), None)
        if failed is None and isinstance(replies[4], list):
            failed = next((r for r in replies[4] if isinstance(r, Exception)), None)
        if isinstance(failed, redis.exceptions.ExecAbortError) and is_oom(failed):
            # Redis checks memory at EXEC for a queued transaction: the same clear error as
            # the enqueue script's (nothing was written either way).
            raise redis.OutOfMemoryError(str(failed).split("because of: ", 1)[-1]) from failed
        if failed is not None:
            raise failed
        if wait:
            self.scripts.check_replicated(replies[5], replicas, timeout_s)

    # -- reading -----------------------------------------------------------------------------
    def get(self, queue: str, job_id: str) -> dict[str, Any]:
        """The record of ``job_id`` (its key, or its finished record in a done bucket: see
        :mod:`redisq.backend.finished`), completed by :func:`complete_record`; empty if none."""
        reply = self.scripts.run("record", *finished.read_call(queue, job_id))
        return finished.record_from_reply(reply, queue, job_id)

    def get_many(self, jobs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """:meth:`get` of each (queue, job id) in one round trip ({} for one that is gone)."""
        replies = self.scripts.run_many([("record", *finished.read_call(q, jid))
                                         for q, jid in jobs])
        return [finished.record_from_reply(reply, q, jid)
                for (q, jid), reply in zip(jobs, replies, strict=True)]

    def status(self, queue: str, job_id: str) -> str | None:
        """The job's status (None: no record), read as :meth:`get` reads it."""
        status: str | None = self.get(queue, job_id).get("status")
        return status

    def find_queue(self, job_id: str) -> str | None:
        """Which known queue holds a record for ``job_id``: one round trip for a job whose
        record is a key (waiting, running, failed), a second for a finished one."""
        queues = index.known(self.client)
        if not queues:
            return None
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.exists(keys.job(q, job_id))
        for q, found in zip(queues, pipe.execute(), strict=True):
            if found:
                return q
        replies = self.scripts.run_many([("record", *finished.read_call(q, job_id))
                                         for q in queues])
        return next((q for q, reply in zip(queues, replies, strict=True) if reply), None)

    def note(self, queue: str, job_id: str, line: str) -> None:
        """Append one line to a job's ``history`` (operator actions; a rare write)."""
        key = keys.job(queue, job_id)
        old = self.client.hget(key, "history")
        # A finished record in a done bucket is not a key: a history line would make one.
        if old is not None or self.client.exists(key):
            self.client.hset(key, "history", (as_text(old) if old else "") + line + "\n")

    def cancel(self, queue: str, job_id: str) -> bool:
        """Cancel a job that waits (queued, retrying, throttled, or deferred by a workflow);
        returns whether it was cancelled. Every caller (``job.cancel()``, the CLI, the
        dashboard) gets the job into the ``cancelled`` index."""
        status, message = self.client.hmget(keys.job(queue, job_id), "status", "message")
        done = self._cancel(queue, job_id, status, message)
        if done and self.index_max > 0:
            pipe = self.client.pipeline(transaction=False)
            note_outcome(pipe, queue, job_id, "cancelled", time.time(), self.index_max,
                         leaving=[as_text(status)] if status in (b"retrying", b"deferred") else [],
                         ttl_s=self.result_ttl_s)
            pipe.execute()
        return done

    def _cancel(self, queue: str, job_id: str, status: bytes | str | None,
                message: bytes | str | None) -> bool:
        if status == b"deferred":  # a workflow's job, not queued yet
            return workflows.cancel_deferred(self.scripts, queue, job_id, self.result_ttl_s)
        if status not in (b"queued", b"retrying", b"throttled"):
            return False
        # The message lives in the queue only: find it there (a record written by an older
        # version still names it). Not found: a worker took it, too late.
        message = message or find_message(self.client, queue, job_id)
        if message is None:
            return False
        ks = [keys.job(queue, job_id), keys.pending(queue), keys.delayed(queue)]
        unique, ttl_s = _unique_and_ttl_of(message, self.result_ttl_s)
        if unique is not None:
            ks.append(keys.unique(queue, unique))
        done = self.scripts.run("cancel", ks, [job_id, f"{time.time():.3f}", message,
                                               max(int(ttl_s * 1000), 1)])
        if done:
            self._publish({"type": "job", "id": job_id, "queue": queue, "status": "cancelled"})
            workflows.after_cancel(self.scripts, message)  # a group member: count it as ended
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
            calls.append(("start", [keys.epochs(q), keys.done(q),
                                    *(keys.job(q, jobs[i].id) for i in idx)],
                          [worker_id, now, consumer_id, token, *(jobs[i].attempt for i in idx),
                           *(jobs[i].id for i in idx)]))
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
        q, now = msg.queue, time.time()
        ks = [keys.processing(q, consumer_id), keys.job(q, env.id), keys.stats(q),
              keys.delayed(q), keys.dead(q), keys.epochs(q),
              keys.done(q), keys.unique(q, env.unique or ""), *index_keys(q, outcome.status, now)]
        # (KEYS[8] is a placeholder for a job without a unique key: settle.lua's KEYS are
        # numbered, and the job index block's come after it.)
        # Attempts and start time again: a job taken by a blocking move is marked started
        # after it was handed to a thread, and a fast one may settle first (start.lua then
        # leaves the finished record alone), so the settle writes them too.
        fields: list[Any] = ["status", outcome.status, "worker", worker_id,
                             "attempts", env.attempt, "started_at",
                             f"{now - outcome.duration_s:.3f}"]
        if env.headers:  # (also written at enqueue; a finished record keeps them)
            fields += ["headers", limits.headers_json(env.headers)]
        extra, ttl_s, delay_ms = self._outcome_fields(fields, msg, env, outcome, now,
                                                      serializer_dumps)
        event = b""
        if self.events:
            event = compact_json({"type": "job", "id": env.id, "queue": q, "task": env.task,
                                  "status": outcome.status,
                                  "duration_s": round(outcome.duration_s, 6),
                                  "error_type": outcome.error_type}).encode()
        timed = outcome.status in ("succeeded", "failed", "dead", "retrying") and env.task != ""
        # (A TTL of 0 keeps the record for ever: a positive one is at least 1 ms.)
        args = [outcome.status, msg.body, extra, delay_ms, ttl_s and max(int(ttl_s * 1000), 1),
                env.id,
                self.dead_max, keys.EVENTS_CHANNEL if self.events else "", event,
                duration_field(outcome.duration_s) if timed else "",
                f"{outcome.duration_s:.6f}", consumer_id, msg.token or "", worker_id, env.attempt,
                *self._record_args(fields, env, outcome, worker_id, ttl_s),
                *self._sampler.args(now, self.index_max, env, outcome.duration_s)]
        return "settle", ks, args

    def _record_args(self, fields: list[Any], env: Envelope, outcome: Outcome, worker_id: str,
                     ttl_s: float) -> list[Any]:
        """settle.lua's ARGV[16..]: a finished record that goes to a done bucket (succeeded or
        cancelled, kept for a time, not whole) as the bucket width and the packed record; any
        other as the key's field, value pairs (see :mod:`redisq.backend.finished`)."""
        if (not self.done_buckets or outcome.status not in finished.CODES or ttl_s <= 0
                or "message" in fields[::2]):
            return [0, "", *fields]
        record = dict(zip(fields[0::2], fields[1::2], strict=True))
        packed = finished.pack(outcome.status, env.task, env.enqueued_at, record["started_at"],
                               record["finished_at"], env.attempt, worker_id,
                               record.get("args"), record.get("result", "null"),
                               record.get("headers", ""))
        return [finished.bucket_width_ms(int(ttl_s * 1000)), packed]

    def _outcome_fields(self, fields: list[Any], msg: Message, env: Envelope, outcome: Outcome,
                        now: float, serializer_dumps: Any) -> tuple[bytes, float, int]:
        """Add what ``outcome`` writes into the record to ``fields``; returns the settle's
        extra payload (the next attempt's message, or the dead letter), the record's TTL and
        the retry delay in milliseconds."""
        extra, ttl_s, delay_ms = b"", 0.0, 0
        # A job's own result_ttl_s (task.options(result_ttl_s=...)) over the App's.
        result_ttl_s = env.options.get("result_ttl_s", self.result_ttl_s) if env.options \
            else self.result_ttl_s
        if outcome.status == "succeeded":
            # (progress: Records.get says 1 for a succeeded job; not stored, per job.)
            fields += ["result", outcome.result_json, "finished_at", f"{now:.3f}",
                       *self._arguments(msg, env)]
            ttl_s = result_ttl_s
        elif outcome.status in ("cancelled", "expired"):
            fields += ["finished_at", f"{now:.3f}", *self._arguments(msg, env)]
            if outcome.error_message:  # expired: when its deadline was
                fields += ["error_type", outcome.error_type, "error_message",
                           outcome.error_message]
            ttl_s = result_ttl_s
        else:
            fields += ["error_type", outcome.error_type, "error_message", outcome.error_message,
                       "traceback", outcome.traceback]
            if outcome.status == "retrying":
                delay_ms = int(outcome.retry_in_s * 1000)
                extra = serializer_dumps(env.next_attempt().to_dict())
                fields += ["next_attempt_at", f"{now + outcome.retry_in_s:.3f}"]
            else:
                fields += ["finished_at", f"{now:.3f}"]
                ttl_s = self.failure_ttl_s
                if outcome.status == "dead":  # the dead letter keeps the whole message
                    extra = dead_entry(msg.body, outcome.error_type, outcome.error_message,
                                       env.id, env.task, self.max_message_bytes)
                    fields += self._arguments(msg, env)
                else:  # failed: nowhere else to inspect it (or to run it again from)
                    fields += ["message", msg.body]
        return extra, ttl_s, delay_ms

    def _arguments(self, msg: Message, env: Envelope) -> list[Any]:
        """What a finished record keeps of the job's arguments (``args_summary_bytes``)."""
        if self.args_summary_bytes < 0:
            return ["message", msg.body]
        summary = args_summary(env, self.args_summary_bytes)
        return [] if summary is None else ["args", summary]

    def settle_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        return self.scripts.run_many(calls)

    def report_progress(self, queue: str, job_id: str, fraction: float, message: str) -> None:
        """Record a running job's progress (``lua/progress.lua``: a job that is not running
        any more is left as it is) and publish it."""
        event = json.dumps({"type": "progress", "id": job_id, "queue": queue,
                            "progress": fraction, "message": message}) if self.events else ""
        self.scripts.run("progress", [keys.job(queue, job_id)],
                         [f"{fraction:.4f}", message, keys.EVENTS_CHANNEL if event else "", event])

    # -- dead letters ------------------------------------------------------------------------
    def requeue_dead(self, queue: str, limit: int | None = None,
                     job_ids: Sequence[str] | None = None) -> int:
        """Bring dead jobs back (all, the first ``limit``, or those in ``job_ids``)."""
        moved = 0
        for entry in self.client.lrange(keys.dead(queue), 0, -1):
            if limit is not None and moved >= limit:
                break
            env = self._dead_envelope(entry)
            if env is None:
                continue  # malformed messages cannot run; they stay for inspection/purge
            if job_ids is not None and env.id not in job_ids:
                continue
            # Brought back by hand: its deadline (expires_s) is over, not its run.
            options = {k: v for k, v in env.options.items() if k != "expires_at"}
            fresh = json.dumps(replace(env, attempt=1, queue=queue, options=options).to_dict(),
                               separators=(",", ":")).encode()
            moved += int(self.scripts.run("requeue_dead", [keys.dead(queue), keys.pending(queue),
                                          keys.job(queue, env.id), keys.stats(queue)],
                                          [entry, fresh]))
        return moved

    def _dead_envelope(self, entry: bytes | str) -> Envelope | None:
        """The job a dead-letter entry holds, or None for one that cannot run (any error:
        entries are data anyone with Redis access may have written). Oversized entries are
        not parsed at all (a message is at most 6x longer as escaped JSON text)."""
        if len(entry) > 6 * self.max_message_bytes + 65_536:
            return None
        try:
            data = json.loads(entry)
            if data.get("message_truncated"):
                return None
            return Envelope.from_dict(limits.decode(
                _JSON, dead_message(data), self.max_message_bytes,
                limits.MAX_DEPTH + limits.JOB_WRAPPING))
        except Exception:
            return None

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


def args_summary(env: Envelope, limit: int) -> str | None:
    """The job's arguments as JSON (``[args] {kwargs}``), cut to ``limit`` bytes of UTF-8
    (None without arguments, or with ``limit`` 0). Under 64 bytes a record stays a compact
    hash (Redis's ``hash-max-listpack-value``), about half the memory of a larger one."""
    if limit == 0 or (not env.args and not env.kwargs):
        return None
    text = _compact(env.args) + (" " + _compact(env.kwargs) if env.kwargs else "")
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:max(limit - 3, 0)].decode("utf-8", "ignore") + "\u2026"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)


#: Messages read per round trip while ``find_message`` looks through a queue.
SCAN_CHUNK = 1000


def find_message(client: redis.Redis, queue: str, job_id: str) -> bytes | None:
    """The message of ``job_id`` waiting in ``queue`` (its delayed set first: retries and
    delayed jobs wait there), or None. It reads the whole queue in the worst case, in chunks:
    that is the price of keeping each message in one place (cancel is rare; enqueue and
    consume are not). redisq's JSON messages start with the id; other encodings are matched
    by the id's bytes anywhere in the message."""
    head = b'{"id":' + json.dumps(job_id, ensure_ascii=False).encode()
    ident = job_id.encode()

    def mine(body: bytes) -> bool:
        return body.startswith(head) if body[:1] == b"{" else ident in body

    # Lists from the left: the newest first, and consumption (from the right) shifts nothing.
    for read, key in ((client.zrange, keys.delayed(queue)), (client.lrange, keys.pending(queue))):
        start = 0
        while True:
            chunk = read(key, start, start + SCAN_CHUNK - 1)
            # redisq's clients answer bytes (no decode_responses); anything else is not ours.
            found = next((m for m in chunk if isinstance(m, bytes) and mine(m)), None)
            if found is not None:
                return found
            if len(chunk) < SCAN_CHUNK:
                break
            start += SCAN_CHUNK
    return None


def _unique_and_ttl_of(raw: bytes | str | None, ttl_s: float) -> tuple[str | None, float]:
    """A message's unique key, and its own ``result_ttl_s`` option (else ``ttl_s``)."""
    try:
        data = json.loads(raw) if raw is not None else {}
        unique, own = data.get("unique"), (data.get("options") or {}).get("result_ttl_s", ttl_s)
    except Exception:  # not JSON, not an object, or poison (RecursionError, MemoryError)
        return None, ttl_s
    ok = isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0
    return unique if isinstance(unique, str) else None, own if ok else ttl_s


_JSON = JSONSerializer()

__all__ = ["SETTLE_DUPLICATE", "SETTLE_FENCED", "Records", "complete_record"]
