"""Redis connections that never hang.

Every connection made here has:

* a socket read deadline (``block_timeout_s + read_margin_s``) larger than any blocking command
  redisq sends, so a dead or half-open connection surfaces as an error instead of a silent wait;
* TCP keepalive with short probes, so an idle pooled connection is found dead by the kernel;
* no hidden retries: redis-py 8 retries a timed-out command up to 10 times by default, and a
  blocking pop retried after a lost reply drops the element. redisq disables that and decides
  itself what is safe to repeat (see :class:`Outage`);
* a name (``CLIENT SETNAME redisq:<role>:<host>:<pid>``), re-sent on every reconnect.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, SlotNotCoveredError, TryAgainError
from redis.retry import Retry as RedisRetry

from ..errors import ConfigError
from . import failover
from .backoff import Backoff, doubling
from .cluster import cluster_client
from .urls import ConnectionOptions as ConnectionOptions
from .urls import (
    configured_url,
    is_embedded,
    redact,
    sentinel_target,
    sentinel_tls,
    split_tls_query,
    tls_kwargs,
)

log = logging.getLogger("redisq.connection")

#: Errors that mean "this connection is unusable; make a new one". In a Redis Cluster, also
#: "this slot is not served right now" (its node is down or moving): nothing ran, retry later.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
)

#: Also "the server is loading its data set" (a restart): not up yet, try again.
CONNECTION_OR_LOADING_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS,
                                                                 redis.BusyLoadingError)
#: Also an error reply (OOM, READONLY, CLUSTERDOWN...): the step did not happen; nothing is
#: lost by doing it again later.
CONNECTION_OR_REPLY_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS,
                                                               redis.ResponseError)


def client_name(role: str) -> str:
    """The name every redisq connection gives itself."""
    return f"redisq:{role}:{socket.gethostname()}:{os.getpid()}".replace(" ", "_")


def _keepalive_options(opts: ConnectionOptions) -> dict[int, int]:
    out: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", opts.keepalive_idle_s),
        ("TCP_KEEPINTVL", opts.keepalive_interval_s),
        ("TCP_KEEPCNT", opts.keepalive_count),
    ):
        if hasattr(socket, name):
            out[getattr(socket, name)] = int(value)
    return out


def _no_setinfo() -> dict[str, Any]:
    """redis-py's keywords for "send no CLIENT SETINFO". By default it announces its name and
    version with that command on every new connection, which Redis 7.2+ and Valkey know and
    Redis 7.0 does not: an ACL user then needs ``+client|setinfo`` on the one and cannot be
    given it on the other. Without it, one ACL (docs/security.md) fits them all, and a
    connection costs one round trip less; ``CLIENT SETNAME`` still names every connection."""
    try:
        import redis.driver_info  # noqa: F401 (redis-py 7.1+: lib_name/lib_version deprecated)
    except ImportError:
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None}


#: Keywords that turn off CLIENT SETINFO for every client redisq makes (sync and asyncio).
NO_SETINFO = _no_setinfo()


def _common_kwargs(role: str, opts: ConnectionOptions) -> dict[str, Any]:
    return {
        "socket_timeout": opts.socket_timeout_s,
        "socket_connect_timeout": opts.connect_timeout_s,
        "retry": RedisRetry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "client_name": client_name(role),
        "health_check_interval": 0,
        **NO_SETINFO,
    }


def _tcp_kwargs(opts: ConnectionOptions) -> dict[str, Any]:
    return {"socket_keepalive": True, "socket_keepalive_options": _keepalive_options(opts)}


def resolve_url(url: str | None) -> str:
    """``url``, else ``$REDISQ_URL``, else ``$REDIS_URL``, else ``redis://127.0.0.1:6379/0``
    (see :mod:`redisq.urls`); ``"embedded"`` starts (or reuses) the embedded server."""
    url = configured_url(url)
    if not is_embedded(url):
        return url
    from .embedded import ensure_server  # local import: starting a server is the rare path

    return ensure_server().url


def connect(
    url: str | None = None, role: str = "client", options: ConnectionOptions | None = None
) -> redis.Redis:
    """Return a client for ``url`` (``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://h1:26379,h2:26379/mymaster/0``, ``redis+cluster://h1:7000,h2:7001/``)
    configured never to hang."""
    opts = options or ConnectionOptions()
    url = resolve_url(url)
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    common = _common_kwargs(role, opts)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel_client(parsed, common, opts)
    if scheme in ("redis+cluster", "rediss+cluster"):
        extra = _tcp_kwargs(opts)
        if scheme.startswith("rediss"):
            extra.update(tls_kwargs(opts, parse_qs(parsed.query), redact(url)))
        return cluster_client(parsed, common, extra)  # type: ignore[return-value]
    # Failover-aware connection classes: a reply saying the server is no longer the master
    # (READONLY after a DNS-based failover, ...) drops the connection (see redisq.failover).
    if scheme == "unix":
        return redis.Redis.from_url(url, connection_class=failover.FailoverUnixConnection,
                                    **common)
    if scheme == "rediss":
        # redisq reads the TLS options itself (hostname checking on by default); any other
        # option of the URL goes to redis-py, whose URL options would override keywords.
        base, query = split_tls_query(url)
        tls = tls_kwargs(opts, query, redact(url))
        return redis.Redis.from_url(base, connection_class=failover.FailoverSSLConnection,
                                    **common, **_tcp_kwargs(opts), **tls)
    if scheme == "redis":
        return redis.Redis.from_url(url, connection_class=failover.FailoverConnection,
                                    **common, **_tcp_kwargs(opts))
    raise ConfigError(f"unsupported Redis URL scheme {scheme!r} in {redact(url)!r}")


def _sentinel_client(parsed: Any, common: dict[str, Any], opts: ConnectionOptions) -> redis.Redis:
    from redis.sentinel import Sentinel

    target = sentinel_target(parsed)
    hosts, service, db = target.hosts, target.service, target.db
    password, username = target.password, target.username
    extra = _tcp_kwargs(opts)
    # The pool's connections ask the sentinels for the master on every connect; the
    # failover-aware class also drops a connection whose server answers as a non-master.
    conn_class: type = failover.FailoverSentinelConnection
    sentinel_kwargs = sentinel_tls(parsed, opts)
    if sentinel_kwargs:
        extra.update(tls_kwargs(opts, parse_qs(parsed.query), redact(parsed.geturl())))
        conn_class = failover.FailoverSentinelSSLConnection
    sentinel = Sentinel(
        hosts,
        socket_timeout=opts.socket_timeout_s,
        socket_connect_timeout=opts.connect_timeout_s,
        sentinel_kwargs={"socket_timeout": opts.connect_timeout_s, **sentinel_kwargs},
        **extra,
    )
    kwargs = dict(common)
    kwargs.pop("socket_timeout")
    kwargs.pop("socket_connect_timeout")
    client: redis.Redis = sentinel.master_for(
        service, db=db, password=password, username=username,
        socket_timeout=opts.socket_timeout_s, connection_class=conn_class, **kwargs,
    )
    return client


def drop_idle_connections(client: redis.Redis) -> None:
    """After a connection error, close ``client``'s idle pooled connections: they most likely
    went the same way (a dropped NAT flow, a restart, a failover), and each would otherwise
    be found dead only by its own read deadline, one after the other. Connections other
    threads are using are left alone; the next command simply connects afresh."""
    pool = getattr(client, "connection_pool", None)  # a Cluster client has one per node
    if pool is not None:
        pool.disconnect(inuse_connections=False)


def wait_for_redis(client: redis.Redis, timeout_s: float) -> None:
    """PING until the server answers or ``timeout_s`` passes (then re-raise the last error)."""
    deadline = time.monotonic() + timeout_s
    for delay in doubling(0.01, 0.2):
        try:
            client.ping()
            return
        except CONNECTION_OR_LOADING_ERRORS:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)


class Outage:
    """Tracks one component's connection trouble: log the first error of an outage once at
    WARNING with its cause, count reconnects, back off with jitter, log the recovery.

    ``sleep`` is injectable so tests drive time instead of waiting.
    """

    def __init__(
        self,
        what: str,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.what = what
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.on_reconnect = on_reconnect
        self.reconnects = 0
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException, wait: bool = True) -> float:
        """Record a failed call; sleep the backoff delay (unless ``wait`` is false); return it."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s: connection lost (%s: %s); reconnecting",
                        self.what, type(exc).__name__, exc)
        else:
            log.debug("%s: still down (%s: %s)", self.what, type(exc).__name__, exc)
        delay = self.backoff.next_delay_s()
        if wait:
            self.sleep(delay)
        return delay

    def succeeded(self) -> None:
        """Record a successful call; the first after an outage counts as a reconnect."""
        if self._down_since is None:
            return
        took = time.monotonic() - self._down_since
        self._down_since = None
        self.reconnects += 1
        self.backoff.reset()
        log.warning("%s: reconnected after %.2f s (reconnect #%d)", self.what, took, self.reconnects)
        if self.on_reconnect is not None:
            self.on_reconnect()
