"""Redis Cluster: ``redis+cluster://h1:7000,h2:7001/`` (or ``rediss+cluster://``).

Every key of one queue carries the hash tag ``{queue}`` (see :mod:`redisq.keys`), so each Lua
step touches one slot and runs on one node; different queues land on different nodes. What a
cluster changes is only *where* a command goes:

* ordinary commands go through redis-py's :class:`~redis.cluster.RedisCluster`, which routes
  each by its key (and pipelines by node);
* the hot steps go through :class:`ClusterWire`, the cluster form of :class:`redisq.wire.Wire`:
  one lean connection per thread *per node*, each script call sent to the node of its first
  key, a keyless command (``WAIT``, ``SCRIPT LOAD``) to the node of the call next to it.

A node that goes away, or a slot that moved (MOVED, ASK, TRYAGAIN, CLUSTERDOWN), surfaces as a
:class:`redis.ConnectionError` after the slot table is refreshed, so the usual rules apply:
the caller's retry policy repeats the step (every redisq step may be repeated) and a
consumer looks for reserved messages whose reply was lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

log = logging.getLogger("redisq.cluster")

#: Replies that mean "this node does not serve that slot right now": nothing ran.
REROUTE_ERRORS = (MovedError, AskError, TryAgainError, ClusterDownError)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def cluster_client(parsed: Any, common: dict[str, Any], extra: dict[str, Any]) -> RedisCluster:
    """A :class:`RedisCluster` for a ``redis+cluster://`` URL, with redisq's connection rules
    (``common``: timeouts, no hidden retries, name; ``extra``: keepalive, TLS)."""
    nodes = []
    for part in parsed.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.partition(":")
        nodes.append(ClusterNode(host or "localhost", int(port or 6379)))
    path = [p for p in parsed.path.split("/") if p]
    if path and path != ["0"]:
        from .errors import ConfigError

        raise ConfigError("Redis Cluster has only database 0: redis+cluster://h1:7000,h2:7001/")
    kwargs = dict(common)
    kwargs.pop("retry_on_timeout", None)  # deprecated for clusters: `retry` (none) covers it
    if parsed.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    return RedisCluster(
        startup_nodes=nodes,
        password=unquote(parsed.password) if parsed.password else None,
        username=unquote(parsed.username) if parsed.username else None,
        # A cluster that lost a node (and has no replica for it) still serves the other
        # slots: queues living elsewhere keep working.
        require_full_coverage=False,
        **kwargs, **extra)


class ClusterWire:
    """Per-thread, per-node lean connections; :meth:`execute` as :meth:`Wire.execute`."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def _conns(self) -> dict[str, Any]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _conn(self, node: ClusterNode) -> Any:
        conns = self._conns()
        conn = conns.get(node.name)
        if conn is None:
            pool = self._client.get_redis_connection(node).connection_pool
            conn = conns[node.name] = pool.connection_class(**pool.connection_kwargs)
            self._all.add(conn)
        return conn

    def _route(self, commands: Sequence[Sequence[Any]]) -> list[ClusterNode]:
        """The node of each command: its first key's slot; a keyless command goes with the
        command before it (or, first in line, the one after)."""
        slots: list[int | None] = []
        for cmd in commands:
            name = str(cmd[0]).upper()
            keyed = name in ("EVALSHA", "EVAL") and int(cmd[2]) > 0
            slots.append(self._client.keyslot(cmd[3]) if keyed else None)
        known = [s for s in slots if s is not None]
        if not known:
            raise RedisClusterException("no key to route these commands by")
        last = known[0]
        filled = []
        for s in slots:
            last = s if s is not None else last
            filled.append(last)
        try:
            return [self._client.nodes_manager.get_node_from_slot(s) for s in filled]
        except RedisClusterException as exc:  # slot not covered (its node is gone)
            self._refresh()
            raise redis.ConnectionError(f"cluster: {exc}") from exc

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (pipelined per node, in order); an error reply is returned in its
        slot, a connection error (or a moved slot) drops the connection and is raised."""
        nodes = self._route(commands)
        out: list[Any] = [None] * len(commands)
        for node in dict.fromkeys(nodes):  # each node once, in order of first use
            idx = [i for i, n in enumerate(nodes) if n is node]
            for i, res in zip(idx, self._send(node, [commands[i] for i in idx]), strict=True):
                out[i] = res
        return out

    def _send(self, node: ClusterNode, commands: list[Sequence[Any]]) -> list[Any]:
        conn = self._conn(node)
        try:
            if conn._sock is None:
                conn.connect()
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            out: list[Any] = []
            for _ in commands:
                try:
                    out.append(conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            self._refresh()  # the node may be gone for good and its slots served elsewhere
            raise
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        moved = next((r for r in out if isinstance(r, REROUTE_ERRORS)), None)
        if moved is not None:
            self._refresh()
            raise redis.ConnectionError(f"cluster: slot served elsewhere now ({moved}); "
                                        "the slot table is refreshed")
        return out

    def _refresh(self) -> None:
        # Best effort: with every startup node down there is nothing to learn yet.
        with contextlib.suppress(*_REFRESH_ERRORS):
            self._client.nodes_manager.initialize()

    def drop(self) -> None:
        for conn in self._conns().values():
            conn.disconnect()

    def close(self) -> None:
        for conn in list(self._all):
            conn.disconnect()


_REFRESH_ERRORS = (redis.RedisError, RedisClusterException, OSError)

__all__ = ["ClusterWire", "cluster_client", "is_cluster"]
