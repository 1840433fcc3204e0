"""``redisq worker --processes N``: a supervisor process that forks N prodcons workers.

Each child is today's threaded worker (:class:`~redisq.worker.prodcons.ProdconsWorker`), with its
own worker id (``<worker_id>.<slot>`` when one is set), connections and leases; the supervisor
never talks to Redis. It:

- restarts a child that dies (a crash, a kill, the OOM killer) after a backoff with jitter
  (logged), so a crash loop neither hammers Redis nor floods the journal; the dead child's jobs
  come back through its lease, as with a dead single-process worker;
- replaces a child after ``max_jobs_per_child`` jobs or once its RSS is above
  ``max_memory_per_child_mb``: the child itself stops taking jobs, lets its running ones finish,
  and exits with :data:`EXIT_RECYCLE`; the supervisor starts its successor at once;
- fans SIGTERM/SIGINT out to every child (each gets the grace period; a second signal forces)
  and SIGKILLs what is left after ``grace_s`` plus a margin;
- speaks sd_notify for all of them: READY=1 once every child is ready, WATCHDOG=1 while its own
  loop runs (a child whose loop hangs is killed with SIGABRT, which dumps its threads' stacks
  under ``PYTHONFAULTHANDLER``, and restarted), STATUS= with the children and their counts.

Children report to the supervisor through a shared anonymous memory map (ready flag, last
progress, processed, failed per slot), written from their supervisor thread: no pipe to drain,
no lock, and a child killed mid-write leaves at worst one stale number.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from ..backend.backoff import Backoff
from ..execution import Reserved
from .notify import Notifier
from .prodcons import ProdconsWorker

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings

log = logging.getLogger("redisq.supervisor")

#: A child's exit code when it stopped to be replaced (max jobs or memory): restart at once.
EXIT_RECYCLE = 3
#: A child's exit code for a configuration error: restarting cannot fix it.
EXIT_CONFIG = 2
TICK_S = 0.1
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: How often a child reports its progress and counts to the supervisor.
CHILD_REPORT_S = 0.5
#: A child that lived this long before dying starts its next restart backoff from scratch.
STABLE_S = 30.0
#: After the grace period, how long children get to give their jobs back before SIGKILL.
KILL_MARGIN_S = 10.0
#: STATUS= (what `systemctl status` shows) is sent at most this often, when it changed.
STATUS_EVERY_S = 1.0
_FIELDS = 4  # per slot: ready, last progress (CLOCK_MONOTONIC), processed, failed
_READY, _PROGRESS, _PROCESSED, _FAILED = range(_FIELDS)
_STOPPING = 2.0  # the ready cell of a child that is finishing its running jobs


class Board:
    """Per-slot numbers shared by the supervisor and its children (an anonymous ``MAP_SHARED``
    map made before the forks): aligned doubles, each written by one process only."""

    def __init__(self, slots: int) -> None:
        self._map = mmap.mmap(-1, max(slots * _FIELDS * 8, 8))
        self._cells = memoryview(self._map).cast("d")

    def get(self, slot: int, field: int) -> float:
        return float(self._cells[slot * _FIELDS + field])

    def set(self, slot: int, field: int, value: float) -> None:
        self._cells[slot * _FIELDS + field] = value

    def clear(self, slot: int) -> None:
        for f in range(_FIELDS):
            self.set(slot, f, 0.0)


class SlotNotifier(Notifier):
    """A child's notifier: what would go to systemd goes to its slot on the board. WATCHDOG
    (sent by :class:`~redisq.worker.daemon.Daemon` only while its main loop progresses) is how
    the supervisor knows a child is alive."""

    def __init__(self, board: Board, slot: int) -> None:
        super().__init__(path="")
        self.board, self.slot = board, slot
        self.watchdog_interval_s = CHILD_REPORT_S

    def ready(self) -> bool:
        self.board.set(self.slot, _PROGRESS, time.monotonic())
        self.board.set(self.slot, _READY, 1.0)
        return True

    def watchdog(self) -> bool:
        self.board.set(self.slot, _PROGRESS, time.monotonic())
        return True

    def stopping(self) -> bool:
        """No WATCHDOG while running jobs finish: the supervisor gives it the grace period."""
        self.board.set(self.slot, _PROGRESS, time.monotonic())
        self.board.set(self.slot, _READY, _STOPPING)
        return True


class ChildWorker(ProdconsWorker):
    """A prodcons worker in a supervisor's child: reports its counts to the board and stops
    itself (gracefully) when it is due for replacement."""

    board: Board
    slot: int
    recycling = False
    ran = 0

    def _ran(self, job: Reserved) -> None:
        # Counted when it ran, not when its outcome was written: the recorder may write a
        # batch later, by which time more jobs would have started here.
        limit = self.settings.max_jobs_per_child
        if not limit:
            return
        with self._slots:
            self.ran += 1
            due = self.ran >= limit and not self.recycling
            if due:
                self.recycling = True
        if due:
            self._recycle(f"{limit} jobs (max_jobs_per_child={limit})")

    def tick(self) -> None:
        super().tick()
        self.board.set(self.slot, _PROCESSED, float(self.processed))
        self.board.set(self.slot, _FAILED, float(self.failed))
        limit_mb = self.settings.max_memory_per_child_mb
        if limit_mb and not self.recycling:
            rss = rss_mb()
            if rss > limit_mb:
                self.recycling = True
                self._recycle(f"RSS {rss:.1f} MB > max_memory_per_child_mb={limit_mb:g}")

    def _recycle(self, why: str) -> None:
        self.recycling = True
        log.info("worker=%s recycling after %s: finishing running jobs, then a new process "
                 "takes over", self.id, why)
        self.stop()


def rss_mb() -> float:
    """This process's resident set size now (Linux ``/proc``; elsewhere its peak)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    restart_at: float = 0.0  # when a dead child's successor is due (after its backoff)
    done: bool = False  # burst: this child drained the queues and exited 0
    # Restart delays after crashes: jittered, 0.25 s growing to 30 s (reset after STABLE_S).
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))
    killed_hung: bool = False


class Supervisor:
    """Forks and watches ``settings.processes`` children (see the module docstring)."""

    def __init__(self, app: App, settings: Settings, notifier: Notifier | None = None) -> None:
        self.app = app
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.board = Board(settings.processes)
        self.slots = [Slot(i) for i in range(settings.processes)]
        self.stopping = False
        self.forced = False
        self.stop_at = 0.0
        self.restarts = 0
        self.recycled = 0
        self.processed = 0  # of children that ended (live ones are on the board)
        self.failed = 0
        self.exit_code = 0
        self._ready_sent = False
        self._status = ""
        self._status_at = float("-inf")
        # A child whose loop made no progress for this long is hung (Daemon.progressing's
        # bound plus time for the report to arrive).
        self.hung_after_s = settings.block_timeout_s * 2 + 2.0 + 5.0 + 2 * CHILD_REPORT_S

    # -- life --------------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("supervisor pid=%d starting %d worker processes (concurrency=%d each%s)",
                 os.getpid(), len(self.slots), self.settings.concurrency, self._limits())
        for slot in self.slots:
            self._spawn(slot)
        last_watchdog = float("-inf")
        while any(s.pid for s in self.slots) or (not self.stopping and not self._all_done()):
            self._reap()
            now = time.monotonic()
            if not self.stopping:
                self._restart_due(now)
                self._check_hung(now)
            elif not self.forced and now >= self.stop_at:
                self._kill_all(signal.SIGKILL, "still running after the grace period")
                self.forced = True
            self._notify(now)
            every = self.notifier.watchdog_interval_s
            if every and now - last_watchdog >= every and not self.stopping:
                self.notifier.watchdog()
                last_watchdog = now
            time.sleep(TICK_S)
        log.info("supervisor stopped (%d processed, %d failed, %d restarts, %d recycled)",
                 *self._counts(), self.restarts, self.recycled)
        return self.exit_code

    def _limits(self) -> str:
        s = self.settings
        out = f", max_jobs_per_child={s.max_jobs_per_child}" if s.max_jobs_per_child else ""
        if s.max_memory_per_child_mb:
            out += f", max_memory_per_child_mb={s.max_memory_per_child_mb:g}"
        return out

    def _all_done(self) -> bool:
        return all(s.done for s in self.slots)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            log.warning("supervisor: second %s: forcing the children to stop", name)
            self.exit_code = self.exit_code or 1
            self._kill_all(signal.SIGTERM, "")  # their second signal: they force
            return
        log.info("supervisor: %s: stopping %d worker processes (grace %.0f s)", name,
                 sum(1 for s in self.slots if s.pid), self.settings.grace_s)
        self.stopping = True
        self.stop_at = time.monotonic() + self.settings.grace_s + KILL_MARGIN_S
        self.notifier.stopping()
        self._kill_all(signal.SIGTERM, "")

    def _kill_all(self, sig: signal.Signals, why: str) -> None:
        for slot in self.slots:
            if slot.pid:
                if why:
                    log.warning("supervisor: child pid=%d %s: %s", slot.pid, why, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, sig)

    # -- children ----------------------------------------------------------------------------
    def _spawn(self, slot: Slot) -> None:
        self.board.clear(slot.index)
        for handler in logging.getLogger().handlers:  # nothing buffered is written twice
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until each process has the handlers it should: the child must not run
        # the supervisor's handler, and the supervisor must not miss a child's pid.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        if self.stopping:  # a stop signal came since the caller looked: start nothing more
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            return
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the supervisor's code
            code = 1
            try:
                code = self._child(slot.index, parent)
            except BaseException:
                log.exception("worker process slot=%d failed", slot.index)
            finally:
                logging.shutdown()
                os._exit(code)
        # The pid is known before a waiting stop signal's handler runs (at the unblock), so
        # the handler signals this child too: none is left running after a stop.
        slot.pid, slot.started, slot.killed_hung = pid, time.monotonic(), False
        log.info("supervisor: started worker process slot=%d pid=%d", slot.index, pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def _child(self, index: int, parent: int) -> int:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)  # until the worker installs its own
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        _die_with_parent(parent)
        # A client the App made before the fork (an application module that used it on
        # import) holds sockets the supervisor and the other children hold too. Closing it
        # here abandons this process's copies (redis-py's pool sees the new pid and shuts
        # nothing down); the first task to use app.client connects anew, once, however many
        # job threads ask at the same moment (App.client makes it under a lock).
        self.app.close()
        base = self.settings.worker_id
        settings = self.settings.replace(worker_id=f"{base}.{index}" if base else None)
        worker = ChildWorker(self.app, settings, notifier=SlotNotifier(self.board, index))
        worker.board, worker.slot = self.board, index
        code = worker.run()
        self.board.set(index, _PROCESSED, float(worker.processed))
        self.board.set(index, _FAILED, float(worker.failed))
        return EXIT_RECYCLE if worker.recycling else code

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is not None:
                self._ended(slot, os.waitstatus_to_exitcode(status))

    def _ended(self, slot: Slot, code: int) -> None:
        self.processed += int(self.board.get(slot.index, _PROCESSED))
        self.failed += int(self.board.get(slot.index, _FAILED))
        self.board.clear(slot.index)
        pid, slot.pid = slot.pid, 0
        lived = time.monotonic() - slot.started
        if self.stopping:
            # (Killed by the stop signal itself: it came before the child's handlers did.)
            if code not in (0, EXIT_RECYCLE, -signal.SIGTERM, -signal.SIGINT):
                self.exit_code = self.exit_code or 1
            log.info("supervisor: worker process slot=%d pid=%d exited (%d)", slot.index, pid,
                     code)
        elif code == EXIT_RECYCLE:
            self.recycled += 1
            slot.restart_at = time.monotonic()
        elif code == 0 and self.settings.burst:
            slot.done = True
            log.info("supervisor: worker process slot=%d pid=%d drained the queues",
                     slot.index, pid)
        elif code == EXIT_CONFIG:
            log.error("supervisor: worker process slot=%d pid=%d exited with a configuration "
                      "error; stopping", slot.index, pid)
            self.exit_code = EXIT_CONFIG
            self._on_signal(signal.SIGTERM, None)
        else:
            if lived >= STABLE_S:
                slot.backoff.reset()
            delay = slot.backoff.next_delay_s()
            slot.restart_at = time.monotonic() + delay
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            log.warning("supervisor: worker process slot=%d pid=%d died (%s) after %.1f s; "
                        "restarting in %.2f s", slot.index, pid, how, lived, delay)

    def _restart_due(self, now: float) -> None:
        for slot in self.slots:
            if not slot.pid and not slot.done and now >= slot.restart_at:
                if slot.started:
                    self.restarts += 1
                self._spawn(slot)

    def _check_hung(self, now: float) -> None:
        for slot in self.slots:
            state = self.board.get(slot.index, _READY)
            if not slot.pid or slot.killed_hung or not state:
                continue
            idle = now - self.board.get(slot.index, _PROGRESS)
            if state == _STOPPING:  # recycling: its running jobs get the grace period
                if idle > self.settings.grace_s + KILL_MARGIN_S:
                    log.error("supervisor: worker process slot=%d pid=%d still stopping after "
                              "%.0f s: SIGKILL", slot.index, slot.pid, idle)
                    slot.killed_hung = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)
            elif idle > self.hung_after_s:
                log.error("supervisor: worker process slot=%d pid=%d made no progress for "
                          "%.0f s: SIGABRT (its stacks go to the log), then a new one",
                          slot.index, slot.pid, idle)
                slot.killed_hung = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGABRT)

    # -- systemd -----------------------------------------------------------------------------
    def _counts(self) -> tuple[int, int]:
        live = [s for s in self.slots if s.pid]
        return (self.processed + sum(int(self.board.get(s.index, _PROCESSED)) for s in live),
                self.failed + sum(int(self.board.get(s.index, _FAILED)) for s in live))

    def status(self) -> str:
        """The STATUS= line: children alive (ready), counts, restarts and recycles."""
        alive = sum(1 for s in self.slots if s.pid)
        ready = sum(1 for s in self.slots if s.pid and self.board.get(s.index, _READY) == 1.0)
        processed, failed = self._counts()
        return (f"{alive}/{len(self.slots)} worker processes ({ready} ready); "
                f"{processed} processed, {failed} failed; {self.restarts} restarts, "
                f"{self.recycled} recycled")

    def _notify(self, now: float) -> None:
        if not self._ready_sent and all(self.board.get(s.index, _READY) for s in self.slots):
            self._ready_sent = True
            self.notifier.ready()
            log.info("supervisor: %d worker processes ready", len(self.slots))
        if not self.notifier.enabled or now - self._status_at < STATUS_EVERY_S:
            return
        text = self.status()
        if text != self._status:
            self._status, self._status_at = text, now
            self.notifier.status(text)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this child if the supervisor dies (even by SIGKILL), so no worker is
    left orphaned: it then stops gracefully like any worker told to stop."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["EXIT_RECYCLE", "Board", "ChildWorker", "SlotNotifier", "Supervisor", "rss_mb"]
