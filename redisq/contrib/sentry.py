"""Sentry error reporting for jobs (the ``sentry`` extra).

>>> sentry_sdk.init(dsn=...)
>>> app.add_middleware(SentryMiddleware())

Each attempt runs in its own Sentry isolation scope tagged with the job (``redisq.job_id``,
``redisq.task``, ``redisq.queue``, ``redisq.attempt``) and the headers the producer sent
(``header.<name>``, e.g. a request id), so whatever the task reports carries them too. A failed
attempt's exception is captured with its traceback: every failed attempt (``retrying`` too),
or with ``report_retries=False`` only the final failure (``dead``/``failed``). A task's
deliberate :class:`~redisq.Retry` is never reported as an error.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import sentry_sdk

from ..errors import Retry
from ..model import DEAD, FAILED, RETRYING

if TYPE_CHECKING:
    from ..job import JobContext
    from ..model import Outcome

#: Sentry caps tag keys at 32 characters and values at 200.
TAG_KEY_CHARS = 32
TAG_VALUE_CHARS = 200


class SentryMiddleware:
    """Reports failed attempts to Sentry, scoped and tagged per job (see the module)."""

    def __init__(self, report_retries: bool = True) -> None:
        self.report_retries = report_retries
        # The attempt running in this context: (job id, the scope's context manager).
        self._active: contextvars.ContextVar[tuple[str, Any] | None] = \
            contextvars.ContextVar("redisq_sentry_attempt", default=None)

    def before_execute(self, job: JobContext) -> None:
        manager = sentry_sdk.isolation_scope()
        scope = manager.__enter__()
        self._active.set((job.id, manager))
        for key, value in job_tags(job).items():
            scope.set_tag(key, value)
        scope.set_context("redisq", {"job_id": job.id, "task": job.task, "queue": job.queue,
                                     "attempt": job.attempt, "headers": job.headers})

    def after_execute(self, job: JobContext, outcome: Outcome) -> None:
        active = self._active.get()
        mine = active is not None and active[0] == job.id
        try:
            if self._reports(outcome):
                if mine:
                    self._capture(outcome)
                else:  # our before_execute did not run: tag a scope of its own
                    with sentry_sdk.isolation_scope() as scope:
                        for key, value in job_tags(job).items():
                            scope.set_tag(key, value)
                        self._capture(outcome)
        finally:
            if mine and active is not None:
                self._active.set(None)
                active[1].__exit__(None, None, None)

    def _reports(self, outcome: Outcome) -> bool:
        if outcome.exception is None or isinstance(outcome.exception, Retry):
            return False
        return outcome.status in (DEAD, FAILED) or (outcome.status == RETRYING
                                                    and self.report_retries)

    @staticmethod
    def _capture(outcome: Outcome) -> None:
        sentry_sdk.get_isolation_scope().set_tag("redisq.outcome", outcome.status)
        sentry_sdk.capture_exception(outcome.exception)


def job_tags(job: JobContext) -> dict[str, str]:
    """The tags of ``job``'s events: its id, task, queue and attempt, and its headers."""
    tags = {"redisq.job_id": job.id, "redisq.task": job.task, "redisq.queue": job.queue,
            "redisq.attempt": str(job.attempt)}
    for name, value in job.headers.items():
        text = value if isinstance(value, str) else repr(value)
        tags[f"header.{name}"[:TAG_KEY_CHARS]] = text[:TAG_VALUE_CHARS]
    return tags


__all__ = ["SentryMiddleware", "job_tags"]
