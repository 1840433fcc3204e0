"""Many read-only commands in one round trip, on the lean path (:mod:`redisq.backend.wire`).

The dashboard's snapshot reads a few commands per known queue: with a thousand queues that is
thousands of commands a second, and redis-py's pipeline spends ~40 µs of Python per command
packing and parsing them, where the lean path (hiredis packs and parses) spends a few. Replies
come back raw: ``HGETALL`` as a flat list, ``SMEMBERS`` as a list (:func:`as_dict`). A cluster
client goes through its own pipeline (keys of many slots), whose replies are already typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from .cluster import is_cluster
from .wire import wire_for


def read_many(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """The replies of ``commands``, in order; the first error reply is raised."""
    if not commands:
        return []
    if is_cluster(client):
        pipe = client.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        return list(pipe.execute())
    replies = wire_for(client).execute(commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def as_dict(reply: Any) -> dict[Any, Any]:
    """A ``HGETALL`` reply as a dict, raw (a flat list) or typed."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))
