"""The redis-py internals redisq's lean command path (redisq/backend/wire.py, redisq/backend/cluster.py's
ClusterWire) relies on, checked by name: an upgrade that renames or drops one must fail here,
loudly, rather than in a worker's hot path. And the installed redis-py is inside the range
setup.cfg pins (the range these internals are tested on)."""

from __future__ import annotations

import configparser
import inspect
import re
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection, ConnectionPool
from redis.sentinel import SentinelManagedConnection

from redisq.backend import failover, wire
from redisq.backend.connection import connect

ROOT = Path(__file__).resolve().parents[2]


def _pinned_range() -> tuple[tuple[int, ...], tuple[int, ...]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    spec = next(line.strip() for line in cfg["options"]["install_requires"].splitlines()
                if line.strip().startswith("redis"))
    low = re.search(r">=\s*([\d.]+)", spec)
    high = re.search(r"<\s*([\d.]+)", spec)
    assert low and high, f"setup.cfg must pin redis-py to a range (>=X,<Y), not {spec!r}"
    return (tuple(int(p) for p in low.group(1).split(".")),
            tuple(int(p) for p in high.group(1).split(".")))


def test_installed_redis_py_is_in_the_pinned_range() -> None:
    low, high = _pinned_range()
    version = tuple(int(p) for p in re.findall(r"\d+", redis.__version__)[:3])
    assert low <= version < high, f"redis-py {redis.__version__} is outside {low}..{high}"


def test_connection_internals_used_by_the_wire() -> None:
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/x.sock"):
        client = connect(url, "t")
        pool = client.connection_pool
        assert isinstance(pool.connection_kwargs, dict)  # Wire copies the client's options
        conn = pool.connection_class(**pool.connection_kwargs)  # as Wire._conn makes one
        assert conn._sock is None  # not connected yet: Wire connects explicitly
        assert callable(conn._parser.read_response)  # the lean read
        for name in ("connect", "disconnect", "can_read", "send_packed_command",
                     "pack_commands", "read_response"):
            assert callable(getattr(conn, name, None)), f"{type(conn).__name__}.{name}"
        assert "check_health" in inspect.signature(conn.send_packed_command).parameters
        assert "timeout" in inspect.signature(conn.can_read).parameters
        client.close()


def test_read_response_implementations_the_wire_recognises() -> None:
    """wire._STANDARD_READS names redis-py's own read_response methods: if redis-py moved
    them, every connection would silently take the slow read path."""
    assert AbstractConnection.read_response in wire._STANDARD_READS
    assert SentinelManagedConnection.read_response in wire._STANDARD_READS
    for cls in (failover.FailoverConnection, failover.FailoverSSLConnection,
                failover.FailoverUnixConnection):
        assert cls.read_response in wire._STANDARD_READS, cls.__name__
    assert hasattr(ConnectionPool, "connection_class") or "connection_class" in inspect.signature(
        ConnectionPool.__init__).parameters


def test_cluster_internals_used_by_the_cluster_wire() -> None:
    for name in ("keyslot", "get_redis_connection", "get_primaries"):
        assert callable(getattr(RedisCluster, name, None)), f"RedisCluster.{name}"
    from redis.cluster import NodesManager

    for name in ("get_node_from_slot", "initialize"):
        assert callable(getattr(NodesManager, name, None)), f"NodesManager.{name}"
