"""The Lua steps in ``redisq/backend/lua/``, registered once per client.

redis-py's :class:`redis.commands.core.Script` sends EVALSHA and, on NOSCRIPT (after a
``SCRIPT FLUSH`` or a server restart without persistence of the script cache), loads the script
and runs it again, so the scripts survive a flush.

The steps that consume (reserve, start, settle, ack, nack, bury, stale recovery, lease renewal
and release, cancel) begin with ``#!lua flags=allow-oom`` (Redis 7.0+/Valkey): Redis runs them even at
``maxmemory`` with ``noeviction``, because they are what frees memory (a worker refused at
maxmemory would stop draining the very queue that fills it). Producing steps have no flags
line and stay refused with OOM before they write anything. A script with a flags line may
only touch keys of its declared keys' Cluster slot: every key a step derives carries the
queue's hash tag.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from ..errors import NotReplicated
from .wire import wire_for

NAMES = (
    "reserve", "ack", "nack", "bury", "requeue_stale", "schedule", "promote_due",
    "publish_durable", "enqueue", "start", "settle", "cancel", "requeue_dead",
    "lock_release", "lock_extend", "enqueue_many", "leader", "fire_periodic", "renew",
    "beat", "beat_index", "release", "record", "progress",
    # workflows (redisq/backend/workflows.py)
    "wf_group", "wf_member", "wf_next", "wf_cancel", "wf_defer", "wf_depend", "wf_resolve",
    "wf_release",
    "gate", "limit_release",  # rate and concurrency limits
    "retry_now", "delete_job",  # the dashboard's job actions
)


NO_SHEBANG = ("fakeredis",)  #: client modules whose EVAL does not parse a ``#!lua`` flags line


@cache
def source(name: str) -> str:
    """The text of ``redisq/backend/lua/<name>.lua``."""
    return resources.files("redisq.backend").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


def source_for(client: redis.Redis, name: str) -> str:
    """The script as ``client``'s server accepts it: fakeredis (the unit tests' double) runs
    EVAL scripts without the flags line (it has no memory limit to honour)."""
    text = source(name)
    pool = getattr(client, "connection_pool", None)
    module = getattr(getattr(pool, "connection_class", None), "__module__", "")
    if text.startswith("#!") and module.startswith(NO_SHEBANG):
        return "--" + text[2:]  # a comment: line numbers in error messages stay the same
    return text


class Scripts:
    """Attribute access to the registered scripts of one client: ``scripts.reserve(keys, args)``."""

    def __init__(self, client: redis.Redis, names: tuple[str, ...] = NAMES) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {n: client.register_script(source_for(client, n))
                                            for n in names}
        self._wire = wire_for(client)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``scripts.reserve(keys=[...], args=[...])`` runs the script ``reserve``."""
        if name not in self.__dict__.get("_scripts", {}):
            raise AttributeError(name)
        return lambda keys, args: self.run(name, list(keys), list(args))

    def sha(self, name: str) -> str:
        """The SHA1 of script ``name`` (for a call pipelined by hand: see redisq.broker.waits)."""
        return str(self._scripts[name].sha)

    def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script (EVALSHA on this thread's lean connection; loads it on NOSCRIPT)."""
        script = self._scripts[name]
        (res,) = self._wire.execute([("EVALSHA", script.sha, len(keys), *keys, *args)])
        if isinstance(res, NoScriptError):  # it did not run: load it and run again
            return self.run_many([(name, keys, args)])[0]
        if isinstance(res, Exception):
            raise res
        return res

    def run_replicated(self, name: str, keys: list[str], args: list[Any], replicas: int,
                       timeout_s: float) -> Any:
        """Run one script, then ``WAIT`` for ``replicas`` replicas to have its writes, in one
        round trip on the same connection (WAIT counts that connection's writes); raises
        :class:`NotReplicated` when fewer confirm within ``timeout_s``."""
        return self.run_many([(name, keys, args)], replicas, timeout_s)[0]

    def run_many(self, calls: list[tuple[str, list[str], list[Any]]], replicas: int = 0,
                 timeout_s: float = 1.0) -> list[Any]:
        """Run several scripts in one pipelined round trip (then ``WAIT`` for ``replicas``
        replicas, when asked). A call that answers NOSCRIPT (after ``SCRIPT FLUSH`` or a
        restart; it did not run) is loaded and run again."""
        if not calls:
            return []
        wire = self._wire
        wait = [("WAIT", replicas, max(int(timeout_s * 1000), 1))] if replicas else []
        results = wire.execute([*(("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
                                  for name, keys, args in calls), *wait])
        acked = results.pop() if wait else None
        for i, res in enumerate(results):
            if isinstance(res, NoScriptError):
                name, keys, args = calls[i]
                script = self._scripts[name]
                # Same connection: a WAIT sent after this still covers every write above.
                _, results[i], *more = wire.execute([
                    ("SCRIPT", "LOAD", script.script),
                    ("EVALSHA", script.sha, len(keys), *keys, *args), *wait])
                acked = more[0] if more else acked
            if isinstance(results[i], Exception):
                raise results[i]
        if wait:
            self.check_replicated(acked, replicas, timeout_s)
        return results

    def check_replicated(self, acked: Any, replicas: int, timeout_s: float) -> None:
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < replicas:
            # A master short of replicas may be an old master cut off by a failover (the
            # replicas follow the new one): the retry should ask Sentinel again.
            self._wire.drop()
            raise NotReplicated(f"{acked} of {replicas} replica(s) confirmed within {timeout_s} s")
