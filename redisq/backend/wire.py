"""A lean command path for redisq's hot steps (enqueue, reserve, settle).

Measured here with redis-py 8 + hiredis: a command through ``Redis.execute_command`` costs about
60 µs of CPU (pool checkout, retry wrapper, event hooks, response callbacks), the same command
written and read on a connection directly about 20 µs. A worker spends most of its CPU there,
so the hot steps use one dedicated connection per thread, made by the client's own connection
class with the client's own options (timeouts, keepalive, TLS, name, Sentinel resolution), and
everything else keeps using the client. Errors behave as the client's: a connection error drops
the connection (the next call reconnects) and is raised to the caller's retry policy.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.sentinel import SentinelManagedConnection

from .cluster import ClusterWire, is_cluster
from .connection import CONNECTION_ERRORS
from .failover import FailoverAware, is_wrong_node

_pack_one: Callable[..., bytes] | None
try:  # hiredis packs a command in C; redis-py's own packer is four times slower
    import hiredis

    _pack_one = hiredis.pack_command
except ImportError:  # pragma: no cover - the hiredis extra is not installed
    _pack_one = None

#: ``read_response`` implementations whose only additions to the parser's are error mapping and
#: the wrong-node rule, both of which :meth:`Wire.execute` applies itself.
_STANDARD_READS = {AbstractConnection.read_response, FailoverAware.read_response,
                   SentinelManagedConnection.read_response}

_wires: weakref.WeakKeyDictionary[redis.Redis, Wire | ClusterWire] = weakref.WeakKeyDictionary()
_wires_lock = threading.Lock()

#: A connection idle this long is checked before use (as the client's pool checks every
#: connection it hands out): the server may have closed it meanwhile (its ``timeout`` setting,
#: CLIENT KILL), and a command sent on it would fail although nothing is wrong.
IDLE_CHECK_S = 0.5


def wire_for(client: redis.Redis) -> Wire | ClusterWire:
    """The one :class:`Wire` of ``client`` (so its per-thread connections are shared); for a
    Redis Cluster client, a :class:`redisq.backend.cluster.ClusterWire`."""
    with _wires_lock:
        wire = _wires.get(client)
        if wire is None:
            wire = ClusterWire(client) if is_cluster(client) else Wire(client)  # type: ignore[arg-type]
            _wires[client] = wire
        return wire


class Wire:
    """Per-thread connections; :meth:`execute` sends commands in one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._cls = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        # Read replies straight from the parser only when the connection class adds nothing
        # to redis-py's own read (a test double such as fakeredis's does).
        self._lean_read = self._cls.read_response in _STANDARD_READS

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._cls(**self._kwargs)
            self._all.add(conn)
        return conn

    def _stale(self, conn: Any) -> bool:
        """Whether an idle connection was closed by the server (EOF or stray bytes waiting)."""
        now = time.monotonic()
        idle = now - getattr(self._local, "used", now)
        self._local.used = now
        if conn._sock is None or idle < IDLE_CHECK_S:
            return False
        try:
            return bool(conn.can_read(timeout=0))
        except CONNECTION_ERRORS:
            return True

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` pipelined; an error reply is returned in its slot (as the
        exception), a connection error drops the connection and is raised."""
        conn = self._conn()
        try:
            if self._stale(conn):
                conn.disconnect()
            if conn._sock is None:
                # Connect explicitly: send_packed_command would connect to the configured
                # host/port directly, bypassing connection classes that resolve the address
                # at connect time (Sentinel's master lookup).
                conn.connect()
            conn.send_packed_command(_pack(conn, commands), check_health=False)
            # The parser directly: Connection.read_response adds a few µs per reply (error
            # text formatting, health-check clock) that the hot steps pay on every job. Its
            # error handling is kept: socket errors arrive as redis errors (or OSError) and
            # drop the connection below; a wrong-node reply means reconnect (as in failover).
            read = conn._parser.read_response if self._lean_read else conn.read_response
            out: list[Any] = []
            for _ in commands:
                try:
                    reply = read()
                except ResponseError as exc:  # the connection's own read raises error replies
                    reply = exc
                if isinstance(reply, ResponseError) and is_wrong_node(reply):
                    raise redis.ConnectionError(f"{reply} (not a usable master: reconnecting)")
                out.append(reply)
            return out
        except CONNECTION_ERRORS as exc:
            conn.disconnect()
            if isinstance(exc, OSError):
                # A socket error straight from the parser's recv (ECONNRESET, ...): callers
                # expect redis-py's error, as Connection.read_response would have raised.
                raise redis.ConnectionError(f"Error while reading from Redis: {exc}") from exc
            raise
        except BaseException:
            # Anything else (e.g. a timeout exception raised into this thread) may leave
            # replies unread: never reuse a connection whose stream position is unknown.
            conn.disconnect()
            raise

    def drop(self) -> None:
        """Close this thread's connection; the next call makes a new one (through Sentinel:
        to whichever server is the master now)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()

    def close(self) -> None:
        for conn in list(self._all):
            conn.disconnect()


def _pack(conn: Any, commands: Sequence[Sequence[Any]]) -> Any:
    """The wire bytes of ``commands`` (hiredis when installed, else the connection's packer,
    which also turns a value it cannot send into redis-py's DataError)."""
    if _pack_one is not None:
        try:
            return [b"".join([_pack_one(tuple(c)) for c in commands])]
        except TypeError:
            pass  # e.g. a memoryview or None: let redis-py convert it or raise its error
    return conn.pack_commands(commands)
