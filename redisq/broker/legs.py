"""The pieces of a sharded subscription (:mod:`redisq.broker.sharded`): one *leg* is one
subscribed connection to one cluster node, and the kinds, confirmations and errors of a leg.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from redis.client import PubSub
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException

from ..backend.cluster import REROUTE_ERRORS
from ..backend.connection import CONNECTION_ERRORS

RawMessage = dict[str, Any]
CLASSIC = "classic"  # key of the leg for classic channels and patterns
UNCOVERED = "uncovered"  # backoff key of shard channels whose slot no node serves right now
SHARD, CHANNEL, PATTERN = "s", "c", "p"  # kinds of subscription
CONFIRMS = {"ssubscribe": SHARD, "subscribe": CHANNEL, "psubscribe": PATTERN}
DROPS = {"sunsubscribe": SHARD, "unsubscribe": CHANNEL, "punsubscribe": PATTERN}


class PongMissing(Exception):
    """The server did not answer our PING in time: treat the connection as dead."""


#: What makes a leg unusable. A MOVED/ASK reply to SSUBSCRIBE means the slot table is stale.
LEG_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *REROUTE_ERRORS, PongMissing,
                                               RedisClusterException)


@dataclass(eq=False)
class Leg:
    """One subscribed connection: to ``node`` for its shard channels, or the classic one."""

    key: str
    node: ClusterNode
    pubsub: PubSub
    held: dict[str, set[str]] = field(
        default_factory=lambda: {SHARD: set(), CHANNEL: set(), PATTERN: set()})
    unconfirmed: set[tuple[str, str]] = field(default_factory=set)  # sent, not confirmed yet
    last_ping: float = 0.0
    ping_outstanding: float | None = None

    def close(self) -> None:
        # The connection may already be gone; there is nothing left to tell the server.
        with contextlib.suppress(*LEG_ERRORS):
            self.pubsub.reset()


@dataclass(eq=False)
class LegJob:
    """A leg opened on a helper thread: after a failure, its node may not answer."""

    key: str
    node: ClusterNode | None  # None: any master (the classic leg)
    wants: dict[str, set[str]]
    leg: Leg | None = None
    error: Exception | None = None
