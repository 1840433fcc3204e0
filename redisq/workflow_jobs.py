"""The handles a producer holds on a workflow (:class:`GroupJob`, :class:`ChainJob`), made by
:mod:`redisq.canvas`."""

from __future__ import annotations

import time
from typing import Any

from .backend import workflows
from .backend.records import Records
from .errors import JobFailed, JobTimeout
from .job import Job, final_result
from .model import FAILED, QUEUED, STARTED, SUCCEEDED

POLL_S = 0.05


class GroupJob:
    """A producer's handle on a group: its members, callback (a chord's), progress and
    results."""

    def __init__(self, records: Records, group_id: str, queue: str, members: list[Job[Any]],
                 callback: Job[Any] | None) -> None:
        self._records = records
        self.id = group_id
        self.queue = queue  #: where its state lives (the callback's queue)
        self.members = members
        self.callback = callback

    def __repr__(self) -> str:
        return f"<GroupJob {self.id} members={len(self.members)}>"

    def __len__(self) -> int:
        return len(self.members)

    def progress(self) -> dict[str, Any]:
        """``{"total", "done", "failed", "fired", ...}`` (see :func:`workflows.group_state`)."""
        if not self.members:
            return {"id": self.id, "total": 0, "done": 0, "failed": 0, "fired": 0.0}
        return workflows.group_state(self._records.client, self.queue, self.id)

    @property
    def status(self) -> str:
        """queued (no member ended yet), started, succeeded (every member succeeded) or
        failed (all ended, some did not succeed)."""
        p = self.progress()
        if not p:
            return "unknown"
        if p["fired"] is not None:
            return FAILED if p["failed"] else SUCCEEDED
        return STARTED if p["done"] else QUEUED

    def results(self, timeout_s: float = 30.0) -> list[Any]:
        """Wait for every member to end; their results in member order. Raises the first
        failed member's :class:`~redisq.JobFailed`, or :class:`~redisq.JobTimeout`."""
        deadline = time.monotonic() + timeout_s
        while self.members:
            p = self.progress()
            if p and p["fired"] is not None:
                break
            if time.monotonic() >= deadline:
                raise JobTimeout(f"group {self.id}: {p.get('done', 0)} of {len(self)} members "
                                 f"ended after {timeout_s} s")
            time.sleep(POLL_S)
        outcomes = workflows.group_outcomes(self._records.client, self.queue, self.id)
        out = []
        for i, member in enumerate(self.members):
            ok, value = outcomes[i]
            if not ok:
                raise JobFailed(member.id, value.get("error_type") or value.get("status", FAILED),
                                value.get("error_message", ""))
            out.append(value)
        return out


class ChainJob:
    """A producer's handle on a chain: its steps (:class:`Job`, each id ``<chain id>-<k>``),
    and the group that ends it, if any (``ending``, a :class:`GroupJob`)."""

    def __init__(self, records: Records, chain_id: str, steps: list[Job[Any]],
                 ending: GroupJob | None = None) -> None:
        self.id = chain_id
        self.steps = steps
        self.ending = ending

    def __repr__(self) -> str:
        return f"<ChainJob {self.id} steps={len(self.steps)}>"

    @property
    def status(self) -> str | None:
        """The status of the first step that has not succeeded (succeeded once all have; with
        a final group, then the group's, or its callback's)."""
        for step in self.steps:
            status = step.status
            if status != SUCCEEDED:
                return status
        if self.ending is None:
            return SUCCEEDED
        if self.ending.callback is not None:
            return self.ending.callback.status
        return self.ending.status

    def result(self, timeout_s: float = 30.0) -> Any:
        """Wait for the last step (a final chord's callback; a final group's results) and
        return its result; raises the :class:`JobFailed` of the step that stopped the chain."""
        deadline = time.monotonic() + timeout_s
        jobs = self.steps + ([self.ending.callback] if self.ending and self.ending.callback
                             else [])
        while True:
            for step in jobs:
                done, value = final_result(step.id, step.info())  # raises for a failed step
                if not done:
                    break
            else:
                if self.ending is not None and self.ending.callback is None:
                    return self.ending.results(max(deadline - time.monotonic(), 0.0))
                return value
            if time.monotonic() >= deadline:
                raise JobTimeout(f"chain {self.id} still at job {step.id} after {timeout_s} s")
            time.sleep(POLL_S)


__all__ = ["ChainJob", "GroupJob"]
