"""The prodcons worker's intake: from reserved messages to jobs that may run.

Each message is decoded and checked (:func:`redisq.limits.decode`); one that cannot be a job is
dead-lettered with its reason (poison never stops a worker); a job that must not run again (a
reservation marked it and it was already finished, or it was taken under a lease this worker
lost: the fence) is dropped. A base class of :class:`~redisq.worker.prodcons.ProdconsWorker`,
whose state it uses (set in its ``__init__``, declared here for the type checker).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..backend.connection import CONNECTION_OR_REPLY_ERRORS
from ..backend.dead import dead_entry
from ..backend.records import Records
from ..broker.consumer import Consumer
from ..execution import Reserved
from ..limits import JOB_WRAPPING, MAX_DEPTH, decode, headers_json, poison_reason
from ..model import DEAD, EXPIRED, TERMINAL, Envelope, Message, Outcome

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("redisq.worker")

#: Poison at least this large is dead-lettered by a thread of its own (one at a time), so the
#: jobs behind it do not wait for a round trip that carries it twice (a 16 MiB message: ~0.5 s).
BURY_ASIDE_BYTES = 1_048_576
#: A job id where redisq writes it (first; the pattern reserve.lua marks records by):
#: printable ASCII without quote or backslash (producers refuse those).
_JOB_ID = re.compile(rb'\{"id":"([!#-\[\]-~]{1,256})"')


class _UnknownTask:
    """Stands in for a task that is not registered, so its job can be settled as dead."""

    name = "<unknown>"


_UNKNOWN: Any = _UnknownTask()


class Intake:
    """Decoding, poison handling and the start fence of a prodcons worker."""

    app: App
    id: str
    records: Records
    consumer: Consumer
    max_message_bytes: int
    _burying: threading.Semaphore

    def record(self, job: Reserved, outcome: Outcome, holds_slot: bool = False) -> None:
        raise NotImplementedError  # the worker's: settle through the recorder

    def _ack_skipped(self, job: Reserved) -> None:
        raise NotImplementedError  # the worker's

    def start(self, messages: list[Message]) -> list[Reserved]:
        """Decode messages, dead-letter the ones that cannot run, and drop the ones whose job
        must not run again (the reservation, or the claim behind a blocking wait, marked
        them started and reported each job's status before; others are marked here first:
        see :meth:`mark`)."""
        runnable = []
        decoded = [r for r in map(self._decode, messages) if r is not None]
        for r in self.mark(self.unpaused(decoded)):
            prev = r.message.before
            if prev in TERMINAL:
                log.info("job=%s task=%s skipped (already %s)", r.env.id, r.env.task, prev)
                self._ack_skipped(r)
                continue
            if r.env.options and self._expired(r):
                continue
            runnable.append(r)
        admitted = self.admit(runnable)
        for r in admitted:
            # DEBUG: at INFO every job gets one line, when it ends (with its duration): a
            # second line per job cost ~9 µs of a ~90 µs job path (issue 17).
            log.debug("job=%s task=%s queue=%s started attempt=%d", r.env.id, r.env.task,
                      r.env.queue, r.env.attempt)
        return admitted

    def unpaused(self, jobs: list[Reserved]) -> list[Reserved]:
        return jobs  # the worker's (see redisq.worker.control): paused queues' jobs go back

    def admit(self, jobs: list[Reserved]) -> list[Reserved]:
        return jobs  # the worker's (see redisq.worker.control): the limits step

    def _expired(self, job: Reserved) -> bool:
        """Whether ``job`` is past its deadline (``expires_s``); if so its attempt is settled
        as expired (recorded, counted in the queue's ``expired``), not run."""
        deadline = job.env.options.get("expires_at")
        if deadline is None or time.time() <= deadline:
            return False
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
        self.record(job, Outcome(EXPIRED, error_type="Expired",
                                 error_message=f"not started by its deadline ({when})"))
        return True

    def mark(self, jobs: list[Reserved]) -> list[Reserved]:
        """Mark jobs found as orphans (or moved by a blocking wait on a cluster, where the
        wait does not claim: see :mod:`redisq.broker.waits`) started before they run, and
        learn each one's status before. It is also the fence: a frozen worker may wake to
        the reply of a move the server made while it was stopped, for a job recovered and
        run elsewhere since; the mark is refused (its epoch ended) and the job does not run
        here. Jobs it refuses or cannot mark are dropped (an unmarked one stays in our
        processing list, and the orphan check delivers it again)."""
        unmarked = [j for j in jobs if j.message.before is None]
        if not unmarked:
            return jobs
        try:
            before = self.records.start(self.id, [j.env for j in unmarked], self.consumer.id,
                                        [j.message.token or "" for j in unmarked])
        except CONNECTION_OR_REPLY_ERRORS as exc:
            log.warning("could not mark %d job(s) started (%s); they will be taken again",
                        len(unmarked), exc)
            for j in unmarked:
                self.consumer.forget(j.message)
            self.consumer.recheck()
            return [j for j in jobs if j.message.before is not None]
        marked = {id(j): b for j, b in zip(unmarked, before, strict=True)}
        out = []
        for j in jobs:
            if id(j) not in marked:
                out.append(j)
            elif marked[id(j)] is None:
                log.warning("job=%s task=%s queue=%s not started: taken under a lease this "
                            "worker lost (recovered for another worker)", j.env.id, j.env.task,
                            j.env.queue)
                self.consumer.forget(j.message)
                self.consumer.lease_lost(j.message.queue, j.message.token or "")
            else:
                out.append(replace(j, message=replace(j.message, before=marked[id(j)])))
        return out

    def _decode(self, m: Message) -> Reserved | None:
        try:
            env = Envelope.from_dict(decode(self.app.serializer, m.body, self.max_message_bytes,
                                            MAX_DEPTH + JOB_WRAPPING))
            if env.headers:  # over MAX_HEADERS_BYTES, or not JSON: dead-lettered with why
                headers_json(env.headers)
        # Whatever a message makes the decoder raise (RecursionError, MemoryError, bad UTF-8,
        # wrong shape) is that message's fault: it is buried, the worker goes on.
        except Exception as exc:
            self._poison(m, *poison_reason(exc))
            return None
        if env.queue != m.queue:
            env = replace(env, queue=m.queue)
        task = self.app.tasks.get(env.task)
        if task is None:
            reason = f"unknown task {env.task!r}: not registered in this worker's app"
            self.record(Reserved(m, env, _UNKNOWN), Outcome(DEAD, error_type="UnknownTask",
                                                            error_message=reason))
            return None
        return Reserved(m, env, task)

    def _poison(self, m: Message, error_type: str, reason: str) -> None:
        """Dead-letter a message that cannot be a job. When it names a job id (as redisq
        writes it), that job's record says dead too: the reservation may have marked it
        started, and a producer may be waiting on it (e.g. a message over this worker's cap)."""
        found = _JOB_ID.match(m.body)
        if found is None or m.before in TERMINAL:  # a finished job's record stays as it is
            log.error("queue=%s dead-lettered a message (%d bytes): %s: %s", m.queue,
                      len(m.body), error_type, reason)
            if len(m.body) >= BURY_ASIDE_BYTES and self._burying.acquire(blocking=False):
                threading.Thread(target=self._bury_aside, args=(m, error_type, reason),
                                 name="redisq-bury", daemon=True).start()
            else:  # small, or one is already buried aside: here (which holds the loop back)
                self._bury_raw(m, error_type, reason)
            return
        env = Envelope(found.group(1).decode(), "", [], {}, m.queue)  # logged when settled
        self.record(Reserved(m, env, _UNKNOWN), Outcome(DEAD, error_type=error_type,
                                                        error_message=reason))

    def _bury_aside(self, m: Message, error_type: str, reason: str) -> None:
        try:
            self._bury_raw(m, error_type, reason)
        finally:
            self._burying.release()

    def _bury_raw(self, m: Message, error_type: str, reason: str) -> None:
        try:
            self.consumer.bury(m, dead_entry(m.body, error_type, reason,
                                             keep_bytes=self.max_message_bytes))
        except Exception as exc:  # Redis trouble, or no memory for a huge entry: try again later
            log.warning("queue=%s could not dead-letter (%s: %s); it will be retried", m.queue,
                        type(exc).__name__, exc)
            self.consumer.forget(m)
            self.consumer.recheck()

    def _still_ours(self, job: Reserved) -> bool:
        """Whether ``job`` may start now. A job marked started may wait for its thread, and a
        worker frozen in between (SIGSTOP, a paused VM) may wake to find it recovered and run
        elsewhere. Free unless this thread was held up for most of a lease: then one round
        trip asks whether the epoch the job was reserved under still holds."""
        q, token = job.message.queue, job.message.token
        known = self.consumer.epoch_known(q, token)
        if known is None and token:
            try:
                known = self.consumer.epoch_holds(q, token)
            except CONNECTION_OR_REPLY_ERRORS as exc:
                log.warning("job=%s: could not check this worker's lease on queue %s (%s); "
                            "the job will be taken again", job.env.id, q, exc)
                return False
        if known is False:
            log.warning("job=%s task=%s queue=%s not started: this worker's lease was lost "
                        "(the job was recovered for another worker)", job.env.id, job.env.task,
                        job.env.queue)
        return known is not False
