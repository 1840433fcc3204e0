"""The Redis side of ``depends_on``: a job held aside until other jobs succeed.

The dependent's message is held aside (``wf_defer``); each parent lists it (``wf_depend``,
which sees a parent that is over already). Workers sweep their queues' parents that are over
(:func:`sweep_parents`), or release a parent's dependents as they settle it
(:func:`release_parent`): each dependent is resolved by ``wf_resolve`` (idempotent), then the
parent is forgotten (``wf_release``). See docs/workflows.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis

from ..model import Envelope, as_text
from . import keys
from .scripts import Scripts
from .workflows import FINAL, STATE_TTL_S, Call

log = logging.getLogger("redisq.workflows")


# -- depends_on --------------------------------------------------------------------------------
def defer_call(env: Envelope, message: bytes, parents: Sequence[tuple[str, str]]) -> Call:
    q = env.queue
    return "wf_defer", [keys.job(q, env.id), keys.wf_held(q, env.id), keys.wf_wait(q, env.id)], \
        [message, env.task, repr(env.enqueued_at), *(f"{pq}|{pid}" for pq, pid in parents)]


def depend(scripts: Scripts, queue: str, job_id: str, parents: Sequence[tuple[str, str]],
           status_of: Callable[[str, str], str | None]) -> None:
    """Register ``job_id`` (already deferred) with each parent; resolve at once what is over.
    A registered parent whose record is not a key (finished records live in done buckets) is
    read through ``status_of`` (:meth:`Records.status`): over already, it is resolved now, and
    the sweep later only forgets it (resolving twice counts nothing)."""
    now = f"{time.time():.3f}"
    calls = [("wf_depend", [keys.job(pq, pid), keys.wf_deps(pq, pid), keys.wf_parents(pq)],
              [f"{queue}|{job_id}", pid, now]) for pq, pid in parents]
    over = []
    for (pq, pid), st in zip(parents, scripts.run_many(calls), strict=True):
        status = as_text(st) or status_of(pq, pid) or "missing"
        if status in FINAL or status == "missing":
            over.append((pq, pid, status))
    if over:
        scripts.run_many([resolve_call(queue, job_id, f"{pq}|{pid}", status, now)
                          for pq, pid, status in over])


def resolve_call(queue: str, job_id: str, parent: str, status: str, now: str) -> Call:
    ks = [keys.job(queue, job_id), keys.wf_held(queue, job_id), keys.wf_wait(queue, job_id),
          keys.pending(queue), keys.stats(queue)]
    return "wf_resolve", ks, [parent, status, now, int(STATE_TTL_S * 1000)]


def sweep_parents(client: redis.Redis, scripts: Scripts, queue: str, status_of: Callable[
        [str, str], str | None], limit: int = 100) -> tuple[int, frozenset[str]]:
    """Resolve the dependents of ``queue``'s parents that are over (a worker's tick). Returns
    how many parents were released, and the ids of those still running (a worker releases
    their dependents as soon as it settles one: :func:`release_parent`). Safe to run
    anywhere, any number of times."""
    raw: list[bytes] = client.zrange(keys.wf_parents(queue), 0, limit - 1)  # type: ignore[assignment]
    released, running = 0, set()
    for pid in (as_text(p) for p in raw):
        status = status_of(queue, pid) or "missing"
        if status not in FINAL and status != "missing":
            running.add(pid)
            continue
        release_parent(client, scripts, queue, pid, status)
        released += 1
    return released, frozenset(running)


def release_parent(client: redis.Redis, scripts: Scripts, queue: str, parent_id: str,
                   status: str) -> None:
    """``parent_id`` ended with ``status``: resolve each of its dependents (idempotent), then
    forget it."""
    now = f"{time.time():.3f}"
    children = [as_text(c) for c in client.smembers(keys.wf_deps(queue, parent_id))]
    calls = [resolve_call(cq, cid, f"{queue}|{parent_id}", status, now)
             for cq, _, cid in (child.partition("|") for child in children)]
    for child, answer in zip(children, scripts.run_many(calls), strict=True):
        if answer in (2, 3):
            log.info("job=%s %s: dependency %s ended %s", child.partition("|")[2],
                     "cancelled" if answer == 2 else "queued", parent_id, status)
    scripts.run("wf_release", [keys.wf_deps(queue, parent_id), keys.wf_parents(queue)],
                [parent_id])
