"""Schedule math of periodic jobs (pure: no Redis): when a schedule ticks, and which ticks to
fire after a gap, by the misfire policy.

Ticks are deterministic, so every scheduler process computes the same ones: ``every_s`` ticks
fall on multiples of the period since the epoch; cron ticks come from ``croniter`` in the
periodic's time zone. Around a DST change cron follows Vixie cron: a time that does not exist
(spring forward) runs at the first time after the gap, and a fixed-time job (minute and hour
fields without ``*``) runs once, not twice, in the hour that repeats (fall back).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_CATCH_UP = 1000
"""Most ticks one pass fires for one periodic (the newest ones): ``misfire="all"`` after a
long downtime catches up this many at most, not an unbounded burst."""
MISFIRE_POLICIES = ("once", "all", "skip")
_EPS = 1e-9  # float slack when dividing a unix time by a period (0.3 / 0.1 = 2.9999...)


@dataclass(frozen=True)
class Plan:
    """What one pass does for one periodic: fire these ticks (oldest first), then move the
    "last fired tick" mark to ``skip_to`` without firing (misfired ticks under ``skip``)."""

    fire: list[float]
    skip_to: float | None = None
    misfired: bool = False  # some ticks were older than the grace: the policy applied


@dataclass(frozen=True)
class Periodic:
    """A schedule for a registered task: exactly one of ``cron`` or ``every_s``.

    ``misfire`` says what happens when ticks older than ``misfire_grace_s`` were never fired
    (every scheduler was down): ``once`` (one run, at the newest due tick, for all the
    pending ones), ``all`` (each, at most the newest :data:`MAX_CATCH_UP`) or ``skip`` (none
    of the old ones; those within the grace still run)."""

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
        if self.every_s is not None and not (0 < self.every_s < math.inf):
            raise ValueError(f"every_s must be a positive number of seconds, got {self.every_s!r}")
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire must be one of {MISFIRE_POLICIES}, got {self.misfire!r}")
        if not self.misfire_grace_s >= 0:
            raise ValueError(f"misfire_grace_s must be >= 0, got {self.misfire_grace_s!r}")
        try:
            ZoneInfo(self.tz)  # unknown zones fail at registration, not at 3 a.m.
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone tz={self.tz!r}") from exc
        if self.cron is not None:
            try:  # also refuses a valid expression that never fires ("0 0 30 2 *")
                self.next_after(time.time())
            except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
                raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from exc

    @property
    def schedule(self) -> str:
        """Human-readable schedule (``cron */5 * * * * (Europe/Paris)``, ``every 60 s``)."""
        return f"cron {self.cron} ({self.tz})" if self.cron else f"every {self.every_s:g} s"

    # -- ticks -------------------------------------------------------------------------------
    def next_after(self, t: float) -> float:
        """The first tick strictly after unix time ``t``."""
        if self.every_s is not None:
            return _round(math.floor(t / self.every_s + _EPS) + 1, self.every_s)
        while True:
            t = float(self._cron(t).get_next(float))
            if not self._repeated(t):
                return t

    def prev_before(self, t: float) -> float:
        """The last tick strictly before unix time ``t``."""
        if self.every_s is not None:
            return _round(math.ceil(t / self.every_s - _EPS) - 1, self.every_s)
        while True:
            t = float(self._cron(t).get_prev(float))
            if not self._repeated(t):
                return t

    def last_until(self, t: float) -> float:
        """The last tick at or before unix time ``t``."""
        prev = self.prev_before(t)
        nxt = self.next_after(prev)
        return nxt if nxt <= t else prev

    def ticks(self, after: float, until: float, limit: int = MAX_CATCH_UP) -> list[float]:
        """The newest ``limit`` ticks in ``(after, until]``, oldest first. Walks back from
        ``until``, so a long gap costs ``limit`` steps, not one per missed tick."""
        out: list[float] = []
        t = self.last_until(until)
        while t > after and len(out) < limit:
            out.append(t)
            t = self.prev_before(t)
        return out[::-1]

    def plan(self, last: float, now: float, grace_s: float | None = None) -> Plan:
        """Which ticks to fire at ``now`` when ticks up to ``last`` were handled: every tick
        within the grace (``misfire_grace_s`` unless given), older ones by the misfire
        policy."""
        cutoff = now - (self.misfire_grace_s if grace_s is None else grace_s)
        fresh = self.ticks(max(last, cutoff), now)
        late = self.last_until(cutoff)
        if late <= last:
            return Plan(fresh)
        if self.misfire == "all":  # the newest MAX_CATCH_UP of them, oldest first
            return Plan(self.ticks(last, now), misfired=True)
        if self.misfire == "once":  # one run, at the newest tick, stands for all of them
            return Plan(fresh[-1:] or [late], misfired=True)
        return Plan(fresh, skip_to=None if fresh else late, misfired=True)

    # -- cron helpers ------------------------------------------------------------------------
    def _cron(self, t: float) -> Any:
        return _croniter()(self.cron, datetime.fromtimestamp(t, ZoneInfo(self.tz)))

    def _repeated(self, t: float) -> bool:
        """Whether ``t`` is the second occurrence of a wall time (the hour that repeats when
        DST ends) of a fixed-time cron job, which Vixie cron runs only the first time."""
        if self._wildcard_time:
            return False
        return datetime.fromtimestamp(t, ZoneInfo(self.tz)).fold == 1

    @property
    def _wildcard_time(self) -> bool:
        fields = (self.cron or "").split()
        if len(fields) < 2:  # @hourly is a wildcard, @daily and the other aliases are fixed
            return (self.cron or "").strip().lower() == "@hourly"
        return fields[0].startswith("*") or fields[1].startswith("*")


def _round(n: int, period: float) -> float:
    # Rounded to the microsecond so that 3 * 0.1 is the tick 0.3 on every host.
    return round(n * period, 6)


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("cron schedules need croniter: pip install 'redisq[cron]'") from exc
    return croniter


def job_id(name: str, tick: float) -> str:
    """The id of the job a tick fires (``periodic:<name>:<unix ts>``): deterministic, so a
    tick fired twice would meet its own job record (enqueue's duplicate check)."""
    return f"periodic:{name}:" + f"{tick:.3f}".rstrip("0").rstrip(".")


_INDEX_TEXT = ("name", "task", "queue", "schedule", "next_at_iso")


def index_row(raw: bytes | str) -> dict[str, Any] | None:
    """One row of the periodic index the scheduler publishes, or None for one it did not
    write (the hash is data anyone with Redis access may have written: any parse error, wrong
    shape or type)."""
    try:
        row = json.loads(raw)
    except Exception:  # ValueError, RecursionError, MemoryError
        return None
    if (not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in _INDEX_TEXT)
            or isinstance(row.get("next_at"), bool)
            or not isinstance(row.get("next_at"), (int, float))):
        return None
    return row
