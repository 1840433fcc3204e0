"""The daemons: the prodcons worker, the pub/sub worker, the scheduler, and their parts
(the pool, the recorder, the systemd notifier; the pure execute step they share with an eager
App is :mod:`redisq.execution`)."""

from __future__ import annotations

import logging

from ..app import App
from ..config import Settings
from ..errors import ConfigError
from .prodcons import ProdconsWorker, Worker
from .pubsub import PubSubWorker
from .scheduler import SchedulerDaemon

log = logging.getLogger("redisq.worker")


def run_worker(app: App, settings: Settings) -> int:
    """Run the worker ``settings.mode`` asks for; returns the exit code."""
    if settings.mode == "pubsub":
        if uses_supervisor(settings):  # every process would handle every message
            raise ConfigError("processes, max_jobs_per_child and max_memory_per_child_mb are "
                              "for prodcons workers (a pubsub worker is one process)")
        if settings.with_scheduler:  # a shared env file may set it for every worker
            log.warning("with_scheduler is ignored in pubsub mode: run the scheduler in a "
                        "prodcons worker or as `redisq scheduler`")

        return PubSubWorker(app, settings).run()
    if uses_supervisor(settings):
        from .supervisor import Supervisor

        return Supervisor(app, settings).run()
    return ProdconsWorker(app, settings).run()


def uses_supervisor(settings: Settings) -> bool:
    """Whether the worker runs as a supervisor with child processes: more than one process,
    or a child replacement limit (a process cannot replace itself)."""
    return (settings.processes > 1 or settings.max_jobs_per_child > 0
            or settings.max_memory_per_child_mb > 0)


__all__ = ["ProdconsWorker", "PubSubWorker", "SchedulerDaemon", "Worker", "run_worker", "uses_supervisor"]
