"""Connections that notice when their server stopped being the master.

After a failover (Sentinel, or a DNS name that moved to a new primary) a connection may still
be open to the old master, now a replica or cut off from its replicas. It does not fail: it
answers with error replies, and redis-py raises those as ordinary :class:`ResponseError`, which
every caller would treat as a bug in the command rather than as "reconnect". These replies mean
"wrong node":

* ``READONLY``: a write sent to a replica (the demoted master);
* ``UNBLOCKED ... instance state changed``: a blocking read (``BLMOVE``) ended because the
  server became a replica;
* ``NOREPLICAS``: the master has fewer good replicas than ``min-replicas-to-write``, as an old
  master that lost its replicas to the new one has;
* ``MASTERDOWN``: a replica whose link to its master is down.

The connection classes here drop the connection and raise :class:`redis.ConnectionError`
instead, so the usual reconnect path (backoff, then a fresh connection, which through Sentinel
asks for the current master) applies everywhere, including the lean per-thread connections of
:mod:`redisq.wire`, which are made from the client's connection class.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import MasterDownError, ReadOnlyError, ResponseError
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

#: First word of the error replies that mean "this server is not the master (any more)".
#: redis-py maps READONLY and MASTERDOWN to classes (and strips the word); the others arrive
#: as a plain ResponseError whose message starts with it.
WRONG_NODE_PREFIXES = ("READONLY", "UNBLOCKED", "NOREPLICAS", "MASTERDOWN")


def is_wrong_node(exc: BaseException) -> bool:
    """Whether ``exc`` is an error reply saying the server is not a usable master."""
    if isinstance(exc, (ReadOnlyError, MasterDownError)):
        return True
    if not isinstance(exc, ResponseError):
        return False
    text = str(exc)
    # Errors raised inside a Lua script keep their code since Redis 7; older servers wrap
    # them ("Error running script ...: -READONLY ..."): look past the wrapper too.
    return text.startswith(WRONG_NODE_PREFIXES) or any(f"-{p} " in text
                                                      for p in WRONG_NODE_PREFIXES)


class FailoverAware:
    """Mixin for a redis-py connection class (first in the bases)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ResponseError as exc:
            if not is_wrong_node(exc):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"{exc} (not a usable master: reconnecting)") from exc


class FailoverConnection(FailoverAware, Connection):
    pass


class FailoverSSLConnection(FailoverAware, SSLConnection):
    pass


class FailoverUnixConnection(FailoverAware, UnixDomainSocketConnection):
    pass


class FailoverSentinelConnection(FailoverAware, SentinelManagedConnection):
    pass


class FailoverSentinelSSLConnection(FailoverAware, SentinelManagedSSLConnection):
    pass


__all__ = ["WRONG_NODE_PREFIXES", "FailoverAware", "FailoverConnection", "FailoverSSLConnection",
           "FailoverSentinelConnection", "FailoverSentinelSSLConnection",
           "FailoverUnixConnection", "is_wrong_node"]
