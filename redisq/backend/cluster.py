"""Redis Cluster: ``redis+cluster://h1:7000,h2:7001/`` (or ``rediss+cluster://``).

Every key of one queue carries the hash tag ``{queue}`` (see :mod:`redisq.keys`), so each Lua
step touches one slot and runs on one node; different queues land on different nodes. What a
cluster changes is only *where* a command goes:

* ordinary commands go through redis-py's :class:`~redis.cluster.RedisCluster`, which routes
  each by its key (and pipelines by node);
* the hot steps go through :class:`ClusterWire`, the cluster form of :class:`redisq.backend.wire.Wire`:
  one lean connection per thread *per node*, each script call sent to the node of its first
  key, a keyless command (``WAIT``, ``SCRIPT LOAD``) to the node of the call next to it.

A node that goes away, or a slot that moved (MOVED, ASK, TRYAGAIN, CLUSTERDOWN), surfaces as a
:class:`redis.ConnectionError` after the slot table is refreshed, so the usual rules apply:
the caller's retry policy repeats the step (every redisq step may be repeated) and a
consumer looks for reserved messages whose reply was lost.

Pub/sub on a cluster is sharded (``SPUBLISH``/``SSUBSCRIBE``) when every master runs Redis 7.0
or later, unless the URL says ``?sharded_pubsub=no`` (see :func:`sharded_pubsub`); the
subscriber side lives in :mod:`redisq.cluster_pubsub`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.client import PubSub
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from ..errors import ConfigError
from .urls import url_hosts

log = logging.getLogger("redisq.cluster")

#: Replies that mean "this node does not serve that slot right now": nothing ran.
REROUTE_ERRORS = (MovedError, AskError, TryAgainError, ClusterDownError)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def node_name(client: RedisCluster, key: str) -> str | None:
    """The name (host:port) of the node serving ``key``'s slot in ``client``'s slot table;
    None when no node does (its node went away and the table was refreshed)."""
    try:
        name: str = client.nodes_manager.get_node_from_slot(client.keyslot(key)).name
        return name
    except (RedisClusterException, KeyError, IndexError, AttributeError):
        return None


def cluster_client(parsed: Any, common: dict[str, Any], extra: dict[str, Any]) -> RedisCluster:
    """A :class:`RedisCluster` for a ``redis+cluster://`` URL, with redisq's connection rules
    (``common``: timeouts, no hidden retries, name; ``extra``: keepalive, TLS)."""
    nodes = [ClusterNode(host, port) for host, port in url_hosts(parsed, 6379)]
    path = [p for p in parsed.path.split("/") if p]
    if path and path != ["0"]:
        raise ConfigError("Redis Cluster has only database 0: redis+cluster://h1:7000,h2:7001/")
    sharded = _sharded_option(parse_qs(parsed.query).get("sharded_pubsub", ["auto"])[-1])
    kwargs = dict(common)
    kwargs.pop("retry_on_timeout", None)  # deprecated for clusters: `retry` (none) covers it
    if parsed.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    client = RedisCluster(
        startup_nodes=nodes,
        password=unquote(parsed.password) if parsed.password else None,
        username=unquote(parsed.username) if parsed.username else None,
        # A cluster that lost a node (and has no replica for it) still serves the other
        # slots: queues living elsewhere keep working.
        require_full_coverage=False,
        **kwargs, **extra)
    if sharded is not None:
        _sharded[client] = sharded
    return client


def _sharded_option(value: str) -> bool | None:
    """``?sharded_pubsub=`` of a cluster URL: yes, no, or auto (None: ask the servers)."""
    low = value.strip().lower()
    if low in ("", "auto"):
        return None
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"sharded_pubsub must be yes, no or auto, not {value!r}")


#: Per cluster client: does its pub/sub use SPUBLISH/SSUBSCRIBE? Decided once (URL option or
#: the servers' versions), because a publisher and its subscribers must agree for the client's
#: lifetime: a SPUBLISH never reaches a classic SUBSCRIBE, nor a PUBLISH an SSUBSCRIBE.
_sharded: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_probe_lock = threading.Lock()  # one probe per client, not one per thread that publishes
SHARDED_MIN_VERSION = (7, 0)


def sharded_pubsub(client: Any) -> bool:
    """Whether pub/sub on ``client`` is sharded: a cluster client whose masters all run Redis
    (or Valkey) 7.0 or later, unless its URL said ``?sharded_pubsub=no`` (or ``=yes``).

    Other clients: False, without any I/O. The first call for a cluster client asks each
    master ``HELLO`` (allowed by redisq's ACL, unlike ``INFO``); masters that do not answer
    are skipped, and with none answering it raises :class:`redis.ConnectionError` (the
    caller's outage handling retries) instead of guessing.
    """
    if not is_cluster(client):
        return False
    known = _sharded.get(client)
    if known is None:
        with _probe_lock:
            known = _sharded.get(client)
            if known is None:
                known = _sharded[client] = _probe(client)
    return known


def _probe(client: RedisCluster) -> bool:
    """Do all masters that answer ``HELLO`` run 7.0 or later?"""
    versions = []
    error: BaseException | None = None
    for node in client.get_primaries():
        try:
            versions.append(_version(client.get_redis_connection(node).execute_command("HELLO")))
        except ResponseError:
            versions.append((0, 0))  # no HELLO (Redis < 6) or not allowed: stay classic
        except _REFRESH_ERRORS as exc:
            error = exc  # unreachable now: decide with the others
    if not versions:
        raise redis.ConnectionError(f"cluster: no master answered HELLO ({error})")
    sharded = min(versions) >= SHARDED_MIN_VERSION
    log.info("cluster pub/sub: %s", "sharded (SPUBLISH/SSUBSCRIBE)" if sharded
             else f"classic (a master runs {'.'.join(map(str, min(versions)))})")
    return sharded


def _version(hello: Any) -> tuple[int, int]:
    """``major.minor`` from a HELLO reply (a map in RESP3, a flat list in RESP2)."""
    if isinstance(hello, list | tuple):
        hello = dict(zip(hello[::2], hello[1::2], strict=True))
    raw = hello.get(b"version", hello.get("version", b"0.0"))
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    major, _, rest = text.partition(".")
    return int(major or 0), int(rest.partition(".")[0] or 0)


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
        refresh_slots(self._client)

    def drop(self) -> None:
        for conn in self._conns().values():
            conn.disconnect()

    def close(self) -> None:
        for conn in list(self._all):
            conn.disconnect()


class NodePubSub(PubSub):
    """A PubSub on one node's pool that never reconnects by itself. redis-py would, inside a
    failing call (blocking while a subscriber's other connections wait), and re-subscribe
    with one SSUBSCRIBE for every channel (CROSSSLOT when they span slots); the caller drops
    it instead and opens a new one after its backoff (see :mod:`redisq.cluster_pubsub`)."""

    def _reconnect(self, conn: Any, error: BaseException | None = None, *args: Any,
                   **kwargs: Any) -> None:
        if error is None:
            # No error: redis-py marks every in-use connection of a node "for reconnect"
            # whenever any thread re-reads the slot table. A subscribed connection that works
            # stays; if its slots did move, the server says so (SUNSUBSCRIBE, MOVED, EOF).
            conn.reset_should_reconnect()
            return
        conn.disconnect()

    def on_connect(self, connection: Any) -> None:
        raise redis.ConnectionError("pub/sub connection re-opened behind redisq's back")


_REFRESH_ERRORS = (redis.RedisError, RedisClusterException, OSError)


def refresh_slots(client: RedisCluster) -> None:
    """Read the slot table again after a node went away or a slot moved. Best effort: with
    every startup node down there is nothing to learn yet."""
    with contextlib.suppress(*_REFRESH_ERRORS):
        client.nodes_manager.initialize()


__all__ = ["ClusterWire", "NodePubSub", "cluster_client", "is_cluster", "node_name",
           "refresh_slots", "sharded_pubsub"]
