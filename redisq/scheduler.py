"""Periodic jobs (cron or every N seconds) that fire exactly once per tick, however many
scheduler processes run, and promotion of due delayed jobs.

* **Leader lease**: one scheduler at a time leads (``lua/leader.lua``: a token with a TTL,
  renewed each pass). When the leader dies, another takes over once the lease runs out.
* **Exactly once per tick**: firing is one Lua step (``lua/fire_periodic.lua``) that moves the
  periodic's "last fired tick" forward only if the tick is newer and queues the job with an id
  derived from the tick. Even two schedulers that both think they lead cannot double a tick.
* **No tick lost in a handover**: a new leader fires every tick after the last one fired.
* **Misfires** (ticks older than ``misfire_grace_s``, e.g. after downtime) follow the
  periodic's policy: ``once`` (default: one run for all of them), ``all`` (each, at most
  :data:`MAX_CATCH_UP`), or ``skip``.
* Ticks of ``every_s`` are aligned on multiples of the period since the epoch, and cron ticks
  are computed in the periodic's time zone, so every scheduler agrees on them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from . import keys
from .connection import CONNECTION_ERRORS
from .daemon import Daemon
from .job import Envelope
from .queue import Queue

if TYPE_CHECKING:
    from .app import App
    from .config import Settings

log = logging.getLogger("redisq.scheduler")

MAX_CATCH_UP = 1000
MISFIRE_POLICIES = ("once", "all", "skip")


@dataclass(frozen=True)
class Periodic:
    """A schedule for a registered task."""

    task: str
    queue: str = "default"
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    misfire: str = "once"
    misfire_grace_s: float = 60.0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("a periodic job needs exactly one of cron= or every_s=")
        if self.every_s is not None and self.every_s <= 0:
            raise ValueError("every_s must be > 0")
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire must be one of {MISFIRE_POLICIES}")
        ZoneInfo(self.tz)  # unknown zones fail at registration, not at 3 a.m.
        if self.cron is not None:
            _croniter()(self.cron)  # validates the expression

    @property
    def schedule(self) -> str:
        return f"cron {self.cron} ({self.tz})" if self.cron else f"every {self.every_s:g} s"

    def next_after(self, t: float) -> float:
        """The first tick strictly after unix time ``t``."""
        if self.every_s is not None:
            n = int(t // self.every_s) + 1
            return n * self.every_s
        start = datetime.fromtimestamp(t, ZoneInfo(self.tz))
        return float(_croniter()(self.cron, start).get_next(float))

    def ticks(self, after: float, until: float, limit: int = MAX_CATCH_UP + 1) -> list[float]:
        """Ticks in ``(after, until]``, oldest first, at most ``limit``."""
        out: list[float] = []
        t = self.next_after(after)
        while t <= until and len(out) < limit:
            out.append(t)
            t = self.next_after(t)
        return out

    def due(self, last: float, now: float) -> list[float]:
        """Which ticks to fire now, given the last fired one: every tick within the grace,
        and the older ones by the misfire policy."""
        ticks = self.ticks(last, now)
        late = [t for t in ticks if now - t > self.misfire_grace_s]
        fresh = [t for t in ticks if now - t <= self.misfire_grace_s]
        if not late:
            return fresh
        if self.misfire == "all":
            return (late + fresh)[:MAX_CATCH_UP]
        if self.misfire == "once" and not fresh:
            return [late[-1]]
        if self.misfire == "once":
            return fresh
        return fresh  # skip


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("cron schedules need croniter: pip install 'redisq[cron]'") from exc
    return croniter


class Scheduler:
    """Fires the app's periodic jobs; call :meth:`tick` often (a few times a second)."""

    def __init__(self, app: App, lease_s: float = 10.0, clock: Callable[[], float] = time.time,
                 client: Any = None) -> None:
        self.app = app
        self.client = client or app.connect("scheduler")
        self.records = app.make_records(self.client)
        self.scripts = self.records.scripts
        self.token = uuid.uuid4().hex
        self.lease_s = lease_s
        self.clock = clock
        self.leading = False

    def tick(self, now: float | None = None) -> list[str]:
        """One pass: keep or take the lease; if leading, fire due ticks and promote due
        delayed jobs. Returns the ids of the jobs queued."""
        now = self.clock() if now is None else now
        leads = bool(self.scripts.run("leader", [keys.SCHEDULER_LEADER],
                                      [self.token, int(self.lease_s * 1000)]))
        if leads != self.leading:
            log.info("scheduler %s %s the leader lease", self.token[:8],
                     "took" if leads else "lost")
            self.leading = leads
        if not leads:
            return []
        fired: list[str] = []
        for name, spec in self.app.periodic_jobs.items():
            fired += self._fire_due(name, spec, now)
        for q in self.app.queues():
            Queue(self.client, q, self.scripts).promote_due()
        return fired

    def _fire_due(self, name: str, spec: Periodic, now: float) -> list[str]:
        last_key = keys.periodic_last(spec.queue, name)
        raw = self.client.get(last_key)
        if raw is None:
            # First run of this schedule: start from now, do not replay history.
            self.client.set(last_key, f"{now:.3f}", nx=True)
            self._publish_index(name, spec, now, None)
            return []
        last = float(raw)
        fired = []
        for tick in spec.due(last, now):
            job_id = f"periodic:{name}:" + f"{tick:.3f}".rstrip("0").rstrip(".")
            env = Envelope(job_id, spec.task, list(spec.args), dict(spec.kwargs), spec.queue,
                           1, round(now, 6))
            message = self.app.serializer.dumps(env.to_dict())
            done = self.scripts.run("fire_periodic",
                                    [last_key, keys.pending(spec.queue),
                                     keys.job(spec.queue, job_id), keys.stats(spec.queue)],
                                    [f"{tick:.3f}", message, spec.task, spec.queue,
                                     f"{now:.6f}"])
            if done:
                fired.append(job_id)
                log.info("job=%s task=%s queue=%s periodic tick %s fired", job_id, spec.task,
                         spec.queue, datetime.fromtimestamp(tick).isoformat())
        skipped = spec.ticks(last, now)
        last_tick = skipped[-1] if skipped else last
        if skipped and not spec.due(last, now):
            self.client.set(last_key, f"{last_tick:.3f}")  # skipped misfires: move past them
        self._publish_index(name, spec, now, last_tick)
        return fired

    def _publish_index(self, name: str, spec: Periodic, now: float, last: float | None) -> None:
        """What ``redisq info`` and the dashboard show, without importing the user's app."""
        nxt = spec.next_after(now)
        self.client.hset(keys.PERIODIC_INDEX, name, json.dumps({
            "name": name, "task": spec.task, "queue": spec.queue, "schedule": spec.schedule,
            "next_at": nxt, "next_at_iso": datetime.fromtimestamp(nxt, ZoneInfo(spec.tz))
            .isoformat(timespec="seconds"), "last_at": last}))

    def resign(self) -> None:
        """Give the lease up at once (a clean stop), so another scheduler takes over."""
        self.scripts.run("lock_release", [keys.SCHEDULER_LEADER], [self.token])
        self.leading = False


def periodic_index(client: Any) -> list[dict[str, Any]]:
    """The published periodic jobs (name, schedule, next_at, last_at), soonest first."""
    rows = [json.loads(v) for v in client.hvals(keys.PERIODIC_INDEX)]
    return sorted(rows, key=lambda r: r.get("next_at") or 0)


class SchedulerDaemon(Daemon):
    """``redisq scheduler``: a :class:`Scheduler` with the daemon's signals, registry and
    systemd watchdog; it never exits because Redis went away."""

    mode = "scheduler"

    def __init__(self, app: App, settings: Settings) -> None:
        super().__init__(app, settings)
        self.scheduler = Scheduler(app, lease_s=settings.lease_s, client=self.client)

    def describe(self) -> str:
        return f"periodic={','.join(self.app.periodic_jobs) or '-'}"

    def iterate(self) -> None:
        try:
            self.scheduler.tick()
            self.outage.succeeded()
        except CONNECTION_ERRORS as exc:
            self.outage.failed(exc)
        self.stopping.wait(0.25)

    def state(self) -> dict[str, Any]:
        return {"leading": self.scheduler.leading, "periodic": list(self.app.periodic_jobs)}

    def finish(self) -> bool:
        try:
            self.scheduler.resign()
        except CONNECTION_ERRORS as exc:
            log.info("scheduler: could not resign (%s); the lease expires by itself", exc)
        return True
