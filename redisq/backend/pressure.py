"""Memory pressure: Redis at ``maxmemory`` (policy ``noeviction``) refuses writes that may grow
memory with ``OOM command not allowed``.

A worker keeps consuming then (its steps are ``allow-oom`` Lua scripts: they are what frees
memory), but it is worth knowing: producers are refused. :class:`MemoryPressure` counts the
refusals a process meets, logs one WARNING a minute while they go on (not one per attempt) and
one INFO line when Redis has room again; the worker publishes its state in its registry entry
(``redis_full``, ``oom_refusals``), read by ``redisq info``, ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger("redisq.worker")

WARN_EVERY_S = 60.0


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write at maxmemory (also inside a transaction:
    EXECABORT names the OOM that discarded it)."""
    return "OOM command not allowed" in str(exc) or "used memory > 'maxmemory'" in str(exc)


class MemoryPressure:
    def __init__(self, what: str, warn_every_s: float = WARN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.warn_every_s = warn_every_s
        self.clock = clock
        self.refusals = 0  #: every refusal met since the start
        self._since: float | None = None  # monotonic time of the first refusal of this spell
        self._since_wall = 0.0
        self._warned_at = float("-inf")
        self._told = False  # this spell was warned about: its end is worth a line too
        self._unwarned = 0
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """Whether the last write that needed memory was refused."""
        return self._since is not None

    def refused(self, step: str, exc: BaseException | str = "OOM") -> None:
        """A write of ``step`` was refused for memory: count it; WARN at most once a minute."""
        now = self.clock()
        with self._lock:
            self.refusals += 1
            self._unwarned += 1
            if self._since is None:
                self._since, self._since_wall = now, time.time()
            if now - self._warned_at < self.warn_every_s:
                return
            count, self._unwarned, self._warned_at = self._unwarned, 0, now
            self._told = True
        log.warning("%s: Redis is at maxmemory (%s refused: %s); jobs keep being consumed, "
                    "producers are refused until memory is freed (%d refusal(s) since the last "
                    "warning; see docs/deployment.md, sizing)", self.what, step, exc, count)

    def room(self) -> None:
        """A write that needed memory went through: the spell (if any) is over. (The WARNING
        clock is not reset: at the edge of maxmemory spells come and go, one line a minute.)"""
        with self._lock:
            since, self._since = self._since, None
            told, self._told = self._told, False
        if since is not None and told:
            log.info("%s: Redis has room again after %.1f s at maxmemory", self.what,
                     self.clock() - since)

    def state(self) -> dict[str, Any]:
        """For the registry entry (which adds ``redis_full``: whether its own write was
        refused)."""
        return {"oom_refusals": self.refusals,
                **({"redis_full_since": round(self._since_wall, 3)} if self.full else {})}


def eviction_policy(client: redis.Redis) -> str | None:
    """Redis's ``maxmemory-policy`` (INFO, else CONFIG GET), or None when both are refused
    (an ACL without them) or the answer is not one server's."""
    for read in (lambda: client.info("memory"), lambda: client.config_get("maxmemory-policy")):
        try:
            answer = read()
        except redis.ResponseError:
            continue
        policy = answer.get("maxmemory_policy") or answer.get("maxmemory-policy")
        if isinstance(policy, bytes):
            policy = policy.decode()
        if isinstance(policy, str):
            return policy
    return None


def check_eviction_policy(client: redis.Redis, what: str) -> str | None:
    """Warn loudly when Redis may evict keys: at ``maxmemory`` an evicting policy deletes
    queues, messages in flight and job records without an error anywhere (jobs lost silently);
    redisq needs ``noeviction`` (producers then get ``OutOfMemoryError``). Returns the policy."""
    policy = eviction_policy(client)
    if policy is None:
        log.info("%s: could not read Redis's maxmemory-policy (INFO and CONFIG GET refused); "
                 "redisq needs noeviction", what)
    elif policy != "noeviction":
        log.warning("%s: Redis's maxmemory-policy is %s: at maxmemory Redis will DELETE queued "
                    "jobs, messages in flight and job records without telling anyone. Set "
                    "maxmemory-policy noeviction (producers then get OutOfMemoryError instead); "
                    "see docs/deployment.md", what, policy)
    return policy
