"""The Lua steps in ``redisq/lua/``, registered once per client.

redis-py's :class:`redis.commands.core.Script` sends EVALSHA and, on NOSCRIPT (after a
``SCRIPT FLUSH`` or a server restart without persistence of the script cache), loads the script
and runs it again, so the scripts survive a flush.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

NAMES = (
    "reserve", "ack", "nack", "bury", "requeue_stale", "schedule", "promote_due",
    "publish_durable", "enqueue", "start", "settle", "cancel", "requeue_dead",
    "lock_release", "lock_extend", "enqueue_many",
)


@cache
def source(name: str) -> str:
    """The text of ``redisq/lua/<name>.lua``."""
    return resources.files("redisq").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


class Scripts:
    """Attribute access to the registered scripts of one client: ``scripts.reserve(keys, args)``."""

    def __init__(self, client: redis.Redis, names: tuple[str, ...] = NAMES) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {n: client.register_script(source(n)) for n in names}

    def __getattr__(self, name: str) -> Script:
        try:
            return self.__dict__["_scripts"][name]
        except KeyError:
            raise AttributeError(name) from None

    def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args, client=self.client)

    def run_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run several scripts in one pipelined round trip. redis-py's pipeline would send a
        ``SCRIPT EXISTS`` before every execute; instead send EVALSHA and, for any call that
        answered NOSCRIPT (it did not run), load the script and run just that call again."""
        if not calls:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name, keys, args in calls:
            pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
        for i, res in enumerate(results):
            if isinstance(res, redis.exceptions.NoScriptError):
                name, keys, args = calls[i]
                results[i] = self.run(name, keys, args)
            elif isinstance(res, Exception):
                raise res
        return list(results)
