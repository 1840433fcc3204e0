"""Periodic jobs (cron or every N seconds) that fire exactly once per tick, however many
scheduler processes run, and promotion of due delayed jobs.

* **Leader lease**: one scheduler at a time leads (``lua/leader.lua``: a token with a TTL set
  with ``SET NX PX``, renewed each pass after checking the token; ``lua/lock_release.lua``
  gives it back on a clean stop). When the leader dies, another takes over once the lease
  runs out.
* **Exactly once per tick**: firing is one Lua step (``lua/fire_periodic.lua``) that moves the
  periodic's "last fired tick" mark forward only if the tick is newer *and* queues the job,
  whose id is derived from the tick. The lease keeps schedulers from competing; exactly-once
  does not depend on it: two schedulers that both think they lead cannot double a tick.
* **No tick lost in a handover**: a new leader fires every tick after the mark. Ticks missed
  for less than twice the lease are always fired one by one, whatever the misfire grace.
* **Misfires** (ticks older than the grace, e.g. after every scheduler was down) follow the
  periodic's policy (:mod:`redisq.periodic`): ``once``, ``all`` (bounded) or ``skip``.
* **One clock**: ticks are computed on Redis's clock (read in the lease step) unless a clock is
  injected, so schedulers on hosts with skewed clocks agree on when a tick is due.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..backend import index, keys
from ..backend.connection import CONNECTION_ERRORS
from ..backend.pressure import MemoryPressure, is_oom
from ..broker.queue import Queue
from ..job import Job
from ..periodic import MAX_CATCH_UP, MISFIRE_POLICIES, Periodic, Plan, index_row, job_id
from .daemon import Daemon

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings

log = logging.getLogger("redisq.scheduler")

INDEX_REFRESH_S = 30.0  # republish an unchanged index row this often (it may have been wiped)

__all__ = ["MAX_CATCH_UP", "MISFIRE_POLICIES", "Periodic", "Scheduler", "SchedulerDaemon"]


class Scheduler:
    """Fires the app's periodic jobs and promotes due delayed jobs; call :meth:`tick` a few
    times a second. ``clock`` (unix seconds) replaces Redis's clock, for tests."""

    def __init__(self, app: App, lease_s: float = 10.0, clock: Callable[[], float] | None = None,
                 client: Any = None) -> None:
        self.app = app
        self.client = client or app.connect("scheduler")
        self.records = app.make_records(self.client)
        self.scripts = self.records.scripts
        self.token = uuid.uuid4().hex
        self.lease_s = lease_s
        self.clock = clock
        self.leading = False
        self._published: dict[str, tuple[float, float | None, float]] = {}
        self._last_fired: dict[str, float | None] = {}
        self.pressure = MemoryPressure("scheduler")

    def tick(self, now: float | None = None) -> list[str]:
        """One pass: keep or take the lease; if leading, fire due ticks of every periodic and
        promote the due delayed jobs of every known queue. Returns the ids of the jobs queued.
        ``now`` (unix seconds) overrides the clock for this pass."""
        leads, redis_now = self._lead()
        if now is None:
            now = self.clock() if self.clock is not None else redis_now
        if not leads:
            return []
        fired: list[str] = []
        for name, spec in self.app.periodic_jobs.items():
            try:
                fired += self._fire_due(name, spec, now)
            except CONNECTION_ERRORS:
                raise
            except Exception as exc:  # one broken periodic must not stop the others
                if is_oom(exc):  # Redis full: retried each pass, said once a minute
                    self.pressure.refused(f"periodic {name}", exc)
                else:
                    log.exception("periodic %s: firing failed", name)
        for q in index.known(self.client):
            Queue(self.client, q, self.scripts).promote_due()
        return fired

    def _lead(self) -> tuple[bool, float]:
        flag, sec, usec = self.scripts.run("leader", [keys.SCHEDULER_LEADER],
                                           [self.token, max(int(self.lease_s * 1000), 1)])
        leads = bool(int(flag))
        if leads != self.leading:
            log.info("scheduler %s %s the leader lease", self.token[:8],
                     "took" if leads else "lost")
            self.leading = leads
        return leads, int(sec) + int(usec) / 1e6

    def grace_s(self, spec: Periodic) -> float:
        """Ticks younger than this are fired one by one: the periodic's grace, but never less
        than a handover can take (the lease runs out, then a pass of the next leader)."""
        return max(spec.misfire_grace_s, 2 * self.lease_s)

    def _fire_due(self, name: str, spec: Periodic, now: float) -> list[str]:
        self.records.register_queue(spec.queue)  # once per process: `redisq info` lists it
        mark = keys.periodic_last(spec.queue, name)
        raw = self.client.get(mark)
        if raw is None:
            # A new schedule starts now: no replay of ticks from before it existed.
            self.client.set(mark, f"{now:.3f}", nx=True)
            self._publish_index(name, spec, now)
            return []
        last = float(raw)
        plan = spec.plan(last, now, self.grace_s(spec))
        fired = [jid for t in plan.fire if (jid := self._fire(name, spec, t, now))]
        if plan.skip_to is not None:
            self._run_fire(spec, mark, plan.skip_to, b"", job_id(name, plan.skip_to), now)
        if plan.misfired:
            log.warning("periodic %s: ticks missed since %s (misfire=%s): %s", name,
                        _iso(last), spec.misfire, _misfire_summary(plan, fired))
        self._publish_index(name, spec, now)
        return fired

    def _fire(self, name: str, spec: Periodic, tick: float, now: float) -> str | None:
        """Queue the job of one tick; its id if this call queued it."""
        jid = job_id(name, tick)
        prepared = self.app.prepare(spec.task, spec.args, spec.kwargs, spec.queue, jid)
        env = replace(prepared.env, enqueued_at=round(now, 3))
        message = self.app.serializer.dumps(env.to_dict())
        unique = [keys.unique(spec.queue, env.unique)] if env.unique is not None else []
        done = self._run_fire(spec, keys.periodic_last(spec.queue, name), tick, message, jid,
                              now, unique, prepared.unique_ttl_s)
        if self.app.hooks.middleware:  # prepare() ran before_enqueue: its pair, queued or not
            self.app.hooks.middleware.after_enqueue(Job(self.app.records, jid, spec.queue,
                                                        done == 1))
        if done == 1:
            self._last_fired[name] = tick
            log.info("job=%s task=%s queue=%s queued for periodic tick %s", jid, spec.task,
                     spec.queue, _iso(tick))
            return jid
        if done == 2:
            log.info("job=%s task=%s queue=%s periodic tick %s skipped: a job with the same "
                     "unique key is queued or running", jid, spec.task, spec.queue, _iso(tick))
        return None

    def _run_fire(self, spec: Periodic, mark: str, tick: float, message: bytes, jid: str,
                  now: float, unique: list[str] | None = None, unique_ttl_s: float = 0.0) -> int:
        q = spec.queue
        ks = [mark, keys.pending(q), keys.job(q, jid), keys.stats(q), *(unique or [])]
        argv = [f"{tick:.3f}", message, spec.task, q, f"{now:.6f}",
                max(int(unique_ttl_s * 1000), 1), jid, keys.job_prefix(q), keys.done(q)]
        if self.app.wait_replicas:
            res = self.scripts.run_replicated("fire_periodic", ks, argv, self.app.wait_replicas,
                                              self.app.wait_timeout_s)
        else:
            res = self.scripts.run("fire_periodic", ks, argv)
        return int(res)

    def _publish_index(self, name: str, spec: Periodic, now: float) -> None:
        """What ``redisq info`` and the dashboard show, without importing the user's app."""
        if name not in self._last_fired:  # keep what an earlier leader published
            old = self.client.hget(keys.PERIODIC_INDEX, name)
            last_at = (index_row(old) or {}).get("last_at") if old else None
            self._last_fired[name] = last_at if isinstance(last_at, (int, float)) else None
        nxt, last = spec.next_after(now), self._last_fired[name]
        seen = self._published.get(name)
        if seen and seen[:2] == (nxt, last) and now - seen[2] < INDEX_REFRESH_S:
            return
        self.client.hset(keys.PERIODIC_INDEX, name, json.dumps({
            "name": name, "task": spec.task, "queue": spec.queue, "schedule": spec.schedule,
            "misfire": spec.misfire, "next_at": nxt, "next_at_iso": _iso(nxt, spec.tz),
            "last_at": last, "last_at_iso": _iso(last, spec.tz) if last else None,
            "updated_at": round(now, 3)}))
        self._published[name] = (nxt, last, now)

    def resign(self) -> None:
        """Give the lease up at once (a clean stop), so another scheduler takes over."""
        if self.leading:
            self.scripts.run("lock_release", [keys.SCHEDULER_LEADER], [self.token])
            log.info("scheduler %s gave the leader lease up", self.token[:8])
        self.leading = False


def _iso(t: float, tz: str | None = None) -> str:
    zone = ZoneInfo(tz) if tz else timezone.utc
    return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")


def _misfire_summary(plan: Plan, fired: list[str]) -> str:
    if plan.skip_to is not None:
        return f"skipped up to {_iso(plan.skip_to)}"
    return f"{len(fired)} job(s) queued for them and the current ticks"


class SchedulerDaemon(Daemon):
    """``redisq scheduler``: a :class:`Scheduler` with the daemon's signals, registry and
    systemd watchdog; it never exits because Redis went away."""

    mode = "scheduler"
    PASS_S = 0.25

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
        except Exception:  # e.g. READONLY from a demoted master: log, wait, try again
            log.exception("scheduler pass failed")
            self.stopping.wait(1.0)
        self.stopping.wait(self.PASS_S)

    def state(self) -> dict[str, Any]:
        return {"leading": self.scheduler.leading, "periodic": list(self.app.periodic_jobs)}

    def finish(self) -> bool:
        try:
            self.scheduler.resign()
        except CONNECTION_ERRORS as exc:
            log.info("scheduler: could not resign (%s); the lease expires by itself", exc)
        return True
