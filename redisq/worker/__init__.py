"""The daemons: the prodcons worker, the pub/sub worker, the scheduler, and their parts
(the pool, the recorder, the systemd notifier; the pure execute step they share with an eager
App is :mod:`redisq.execution`)."""

from __future__ import annotations

import logging

from ..app import App
from ..config import Settings
from .prodcons import ProdconsWorker, Worker
from .pubsub import PubSubWorker
from .scheduler import SchedulerDaemon

log = logging.getLogger("redisq.worker")


def run_worker(app: App, settings: Settings) -> int:
    """Run the worker ``settings.mode`` asks for; returns the exit code."""
    if settings.mode == "pubsub":
        if settings.with_scheduler:  # a shared env file may set it for every worker
            log.warning("with_scheduler is ignored in pubsub mode: run the scheduler in a "
                        "prodcons worker or as `redisq scheduler`")

        return PubSubWorker(app, settings).run()
    return ProdconsWorker(app, settings).run()


__all__ = ["ProdconsWorker", "PubSubWorker", "SchedulerDaemon", "Worker", "run_worker"]
