"""``depends_on``: queue a job once other jobs succeeded (see docs/workflows.md and
:mod:`redisq.backend.dependencies`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .backend import dependencies
from .canvas import WorkflowApp, check_not_unique
from .job import Job
from .workflow_jobs import ChainJob, GroupJob

log = logging.getLogger("redisq.app")


def _parent_jobs(app: WorkflowApp, parent: Any) -> list[tuple[str, str]]:
    """(queue, job id) of what ``depends_on`` names."""
    if isinstance(parent, ChainJob):
        parent = parent.steps[-1]
    if isinstance(parent, GroupJob):
        return [(m.queue, m.id) for m in parent.members]
    if isinstance(parent, str):
        queue = app.records.find_queue(parent)
        if queue is None:
            raise ValueError(f"depends_on: no job {parent!r} in any known queue")
        return [(queue, parent)]
    q, jid = getattr(parent, "queue", None), getattr(parent, "id", None)
    if not isinstance(jid, str) or not isinstance(q, str):
        raise TypeError(f"depends_on takes jobs (handles or ids), not {type(parent).__name__}")
    return [(q, jid)]


def enqueue_deferred(app: WorkflowApp, prepared: Any, parents: Sequence[Any]) -> Job[Any]:
    """Queue ``prepared`` once every job in ``parents`` has succeeded (``depends_on``): it
    waits as "deferred", its message held aside; it is cancelled, with the reason recorded,
    as soon as one parent ends otherwise (failed, dead, cancelled, or no record of it).
    ``parents``: :class:`Job` handles, job ids, a :class:`ChainJob` (its last step) or a
    :class:`GroupJob` (every member; a chord's callback is ``group_job.callback``)."""
    found = [pair for p in parents for pair in _parent_jobs(app, p)]
    if not found:
        raise ValueError("depends_on needs at least one job")
    if prepared.task is not None:
        check_not_unique(prepared.task)
    env = prepared.env
    records = app.records
    records.register_queue(env.queue)
    name, ks, argv = dependencies.defer_call(env, prepared.message, found)
    if not records.scripts.run(name, ks, argv):
        raise ValueError(f"a job with id {env.id!r} exists already")
    dependencies.depend(records.scripts, env.queue, env.id, found, records.status)
    log.info("job=%s task=%s queue=%s deferred until %d job(s) succeed", env.id, env.task,
             env.queue, len(found))
    return Job(records, env.id, env.queue)


__all__ = ["enqueue_deferred"]
