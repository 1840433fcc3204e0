"""Job control in Redis: pausing queues, asking running jobs to abort, and the calls of
the limits steps (``lua/gate.lua``, ``lua/limit_release.lua``) a worker runs around a job.

Pausing is a set of queue names that every worker reads at its tick; an abort is a flag key
under the job's queue tag that the worker running the job reads at its heartbeat (so it
works across hosts: nothing needs to reach the worker but Redis).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis

from ..model import QUEUED, RETRYING, STARTED, THROTTLED, as_text
from . import keys

#: How long an abort flag stays when no worker picks it up (the job ended first, or its
#: worker died and the job was recovered: the next worker to run it sees the flag too).
ABORT_FLAG_TTL_S = 86_400
Call = tuple[str, list[str], list[Any]]


def pause(client: redis.Redis, queue: str) -> bool:
    """Stop workers taking from ``queue``; returns False if it was paused already."""
    return bool(client.sadd(keys.PAUSED, keys.check_name(queue)))


def resume(client: redis.Redis, queue: str) -> bool:
    """Let workers take from ``queue`` again; returns False if it was not paused."""
    return bool(client.srem(keys.PAUSED, keys.check_name(queue)))


def paused(client: redis.Redis) -> set[str]:
    """The paused queues."""
    return {as_text(q, "replace") for q in client.smembers(keys.PAUSED)}


class JobStore(Protocol):
    """What :func:`abort` needs of a job store (Records, or an eager App's in-memory one)."""

    def status(self, queue: str, job_id: str) -> str | None: ...
    def cancel(self, queue: str, job_id: str) -> bool: ...


def abort(records: JobStore, queue: str, job_id: str, client: redis.Redis | None) -> str:
    """Stop a job: one still waiting is cancelled (``"cancelled"``); a running one is flagged
    in ``client``'s Redis for its worker (``"aborting"``: it is told within a second, and
    forced after the worker's ``abort_grace_s``); a finished or unknown one is left alone
    (``""``)."""
    for _ in range(3):  # the job may start between the status read and the cancel
        status = records.status(queue, job_id)
        if status in (QUEUED, RETRYING, THROTTLED):
            if records.cancel(queue, job_id):
                return "cancelled"
            continue
        if status == STARTED and client is not None:
            client.set(keys.abort(queue, job_id), "1", ex=ABORT_FLAG_TTL_S)
            return "aborting"
        return ""
    return ""


def abort_flags(client: redis.Redis, jobs: Sequence[tuple[str, str]]) -> list[bool]:
    """Whether each ``(queue, job id)`` has been asked to abort (one pipelined round trip)."""
    if not jobs:
        return []
    pipe = client.pipeline(transaction=False)
    for q, job_id in jobs:
        pipe.exists(keys.abort(q, job_id))
    return [bool(n) for n in pipe.execute()]


def clear_abort(client: redis.Redis, queue: str, job_id: str) -> None:
    client.delete(keys.abort(queue, job_id))


def gate_call(consumer_id: str, queue: str, task: str, job_id: str, body: bytes, token: str,
              rate_interval_ms: float, concurrency: int, lease_ms: int, now: str) -> Call:
    """The ``gate`` step of one reserved job (see ``lua/gate.lua``)."""
    ks = [keys.processing(queue, consumer_id), keys.delayed(queue), keys.job(queue, job_id),
          keys.stats(queue), keys.epochs(queue), keys.rate(queue, task),
          keys.rate_slots(queue, task), keys.running(queue, task), keys.waiting(queue, task)]
    return "gate", ks, [body, job_id, consumer_id, token, repr(float(rate_interval_ms)),
                        concurrency, lease_ms, now]


def release_call(queue: str, task: str, job_id: str) -> Call:
    """The ``limit_release`` step: a concurrency slot back, one waiter woken."""
    return "limit_release", [keys.running(queue, task), keys.waiting(queue, task),
                             keys.delayed(queue), keys.pending(queue)], [job_id]


def renew_holders(client: redis.Redis, holders: Iterable[tuple[str, str, str]],
                  lease_ms: int) -> None:
    """Extend the concurrency leases of running ``(queue, task, job id)`` (heartbeat). Their
    expiry is on the Redis clock (``gate.lua``), so it is read from Redis here too."""
    holders = list(holders)
    if not holders:
        return
    secs, micros = client.time()
    until = int(secs) * 1000 + int(micros) // 1000 + lease_ms
    pipe = client.pipeline(transaction=False)
    for q, task, job_id in holders:
        pipe.zadd(keys.running(q, task), {job_id: until}, xx=True)
    pipe.execute()
