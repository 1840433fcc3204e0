"""What every long-running redisq process shares: identity, signals, the supervisor thread
(leases, registry, systemd watchdog), and the rule that Redis going away never stops it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis

from ..backend.connection import CONNECTION_ERRORS, Outage
from ..backend.pressure import MemoryPressure, check_eviction_policy, is_oom
from ..backend.registry import Registry
from ..errors import ConfigError
from .notify import Notifier

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings

log = logging.getLogger("redisq.worker")

SUPERVISOR_TICK_S = 0.25
SUPERVISOR_JOIN_S = 10.0  # a tick in progress may wait on a socket deadline
SWITCH_INTERVAL_S = 0.001


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Daemon:
    """Base of the prodcons and pubsub workers: subclasses implement :meth:`iterate` (one
    bounded pass of the main loop), :meth:`maintain` and :meth:`finish`."""

    mode = "daemon"

    def __init__(self, app: App, settings: Settings, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if app.eager:
            # Its tasks' own enqueues would run inline in this process, and nothing it
            # enqueues would reach a queue: REDISQ_EAGER leaked into a worker's environment.
            raise ConfigError("this App is eager (App(eager=True) or REDISQ_EAGER): jobs run "
                              "where they are enqueued, a worker has nothing to do; eager "
                              "mode is for tests, unset it for workers")
        self.app = app
        self.settings = settings
        self.id = settings.worker_id or default_worker_id()
        self.clock = clock
        self.notifier = notifier or Notifier()
        # The socket deadline must outlast the longest blocking wait this daemon sends, or
        # every idle wait would end as a timeout, i.e. a reconnect.
        options = app.options
        if options.block_timeout_s < settings.block_timeout_s:
            options = replace(options, block_timeout_s=settings.block_timeout_s)
        self.client = app.connect(f"worker-{self.mode}", options)
        self.registry = Registry(self.client)
        self.outage = Outage(f"worker {self.id}")
        self.pressure = MemoryPressure(f"worker {self.id}")
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self._loop_left = threading.Event()  # the main loop has ended (finish() is running)
        self._done = threading.Event()  # the supervisor's work is over
        self.iterations = 0
        self.loop_at = time.time()  # wall clock: read by `redisq health` in other processes
        self._loop_mono = clock()
        self._last_beat = float("-inf")
        self._supervisor: threading.Thread | None = None
        self.started_at = time.time()

    # -- life --------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until a signal (or burst end); returns the process exit code."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        # A thread that becomes ready (a reply arrived) waits for the GIL up to the switch
        # interval while another thread computes: 5 ms by default, which is the whole p99
        # budget of a job's start. Job threads mostly wait on I/O, so switching more often
        # costs little.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._wait_for_redis()
        if self.stopping.is_set():  # a signal while Redis was away: nothing started, clean exit
            log.info("worker=%s stopped before Redis answered", self.id)
            return 0
        # (Redis gone again since the PING: the loop's own retries deal with it.)
        with contextlib.suppress(*CONNECTION_ERRORS):
            check_eviction_policy(self.client, f"worker {self.id}")
        for hook in self.app.hooks.startup:
            hook(self)
        try:
            self._beat()
        except CONNECTION_ERRORS as exc:
            # Redis went away (or failed over) since the PING: the loop and the supervisor
            # retry with backoff; exiting here would turn a blip into a crash.
            log.warning("worker=%s first heartbeat failed (%s); retrying", self.id, exc)
        self.notifier.ready()
        log.info("worker=%s mode=%s started pid=%d %s", self.id, self.mode, os.getpid(),
                 self.describe())
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="redisq-supervisor")
        self._supervisor.start()
        try:
            while not self.stopping.is_set():
                self.iterate()
                self.iterations += 1
                self.loop_at = time.time()
                self._loop_mono = self.clock()
        finally:
            self._loop_left.set()
            self.notifier.stopping()
            clean = self.finish()
            self.end_supervisor()
            for hook in self.app.hooks.shutdown:
                try:
                    hook(self)
                except Exception:  # the worker still unregisters and exits with its own code
                    log.exception("worker=%s on_shutdown hook %r failed", self.id, hook)
            self._unregister()
            log.info("worker=%s stopped (%s)", self.id, "clean" if clean else "forced")
        return 0 if clean else 1

    def stop(self, force: bool = False) -> None:
        """Ask the loop to stop (as SIGTERM does); ``force`` skips the grace period."""
        if force:
            self.forced.set()
        self.stopping.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.warning("worker=%s second %s: forcing stop", self.id, name)
            self.stop(force=True)
        else:
            log.info("worker=%s %s: finishing running jobs (up to %.0f s), then stopping",
                     self.id, name, self.settings.grace_s)
            self.stop()

    def _wait_for_redis(self) -> None:
        """Block until Redis answers; only a signal ends the wait."""
        while not self.stopping.is_set():
            try:
                self.client.ping()
                self.outage.succeeded()
                return
            except CONNECTION_ERRORS as exc:
                self.outage.failed(exc)

    def _unregister(self) -> None:
        try:
            self.registry.remove(self.id)
        except CONNECTION_ERRORS as exc:
            log.warning("worker=%s could not unregister (%s); the entry will expire", self.id, exc)

    # -- supervisor thread -------------------------------------------------------------------
    def _supervise(self) -> None:
        """Ticks, heartbeats and the watchdog, until :meth:`end_supervisor`. They go on while
        :meth:`finish` lets running jobs end: leases must outlive the grace period, or another
        worker would recover (and run again) a job that is still running."""
        watchdog_every = self.notifier.watchdog_interval_s
        last_watchdog = float("-inf")
        while not self._done.is_set():
            if self.stopping.is_set():
                if not self._loop_left.is_set():
                    self.interrupt()  # again each tick: a wait may have begun after the last
                if self._done.wait(SUPERVISOR_TICK_S):
                    return
            elif self.stopping.wait(SUPERVISOR_TICK_S):
                continue  # a stop: interrupt the main loop's wait at once
            now = self.clock()
            try:
                self.tick()
                if now - self._last_beat >= self.settings.lease_s / 3:
                    self._beat()
            except CONNECTION_ERRORS as exc:
                log.debug("worker=%s supervisor: %s", self.id, exc)
            except redis.ResponseError as exc:
                if not is_oom(exc):
                    log.exception("worker=%s supervisor step failed", self.id)
                else:  # e.g. a periodic job refused at maxmemory: throttled, not per tick
                    self.pressure.refused("a supervisor step", exc)
            except Exception:
                log.exception("worker=%s supervisor step failed", self.id)
            if (watchdog_every and now - last_watchdog >= watchdog_every
                    and not self.stopping.is_set() and self.progressing()):
                self.notifier.watchdog()
                last_watchdog = now

    def end_supervisor(self) -> None:
        """Stop the supervisor thread (no more lease renewals): :meth:`finish` calls it once
        running jobs are over, before it gives leases and messages back."""
        self._done.set()
        thread = self._supervisor
        if thread is not None and thread is not threading.current_thread():
            thread.join(SUPERVISOR_JOIN_S)

    def progressing(self) -> bool:
        """Whether the main loop completed an iteration recently enough to be called alive:
        one iteration is bounded by a blocking wait plus a backoff, so a longer gap means a
        hang that systemd should cure with a restart."""
        bound_s = self.settings.block_timeout_s * 2 + self.outage.backoff.cap_s + 5.0
        return self.clock() - self._loop_mono <= bound_s

    def _beat(self) -> None:
        self.maintain()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "mode": self.mode,
                "started_at": round(self.started_at, 3), "loop_at": round(self.loop_at, 3),
                "iterations": self.iterations, "reconnects": self.outage.reconnects,
                **self.state()}
        info.update(self.pressure.state())
        if self.registry.beat(self.id, info, self.settings.lease_s):
            self.pressure.room()
        else:
            self.pressure.refused("the heartbeat")
        self._last_beat = self.clock()

    # -- for subclasses ----------------------------------------------------------------------
    def describe(self) -> str:
        return ""

    def iterate(self) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Called (on the supervisor thread) once a stop is asked for, and again every tick
        until the main loop has ended: cut the loop's blocking wait short."""

    def tick(self) -> None:
        """Frequent supervisor work (time limits, delayed jobs); also while stopping."""

    def maintain(self) -> None:
        """Lease renewal and recovery, every ``lease_s / 3``."""

    def state(self) -> dict[str, Any]:
        return {}

    def finish(self) -> bool:
        """Stop cleanly; False if work had to be cut short."""
        return True
