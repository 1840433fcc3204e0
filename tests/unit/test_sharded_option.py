"""When pub/sub is sharded: only on a cluster, decided by the URL's ``sharded_pubsub`` option or
the masters' versions (HELLO replies in either protocol); other clients never ask the server."""

from __future__ import annotations

import fakeredis
import pytest

from redisq.backend.cluster import _sharded_option, _version, sharded_pubsub
from redisq.backend.connection import connect
from redisq.backend.keys import EVENTS_CHANNEL
from redisq.broker.channel import CLASSIC_CHANNELS
from redisq.errors import ConfigError


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", None), ("", None), ("yes", True), ("1", True), ("on", True), ("no", False),
    ("0", False), ("false", False), ("OFF", False)])
def test_url_option(value: str, expected: bool | None) -> None:
    assert _sharded_option(value) is expected


def test_a_bad_url_option_is_refused_before_connecting() -> None:
    with pytest.raises(ConfigError, match="sharded_pubsub"):
        connect("redis+cluster://127.0.0.1:1/?sharded_pubsub=maybe")


@pytest.mark.parametrize(("hello", "version"), [
    ({b"server": b"redis", b"version": b"7.0.15"}, (7, 0)),
    ([b"server", b"redis", b"version", b"6.2.14", b"proto", 2], (6, 2)),
    ({"server": "valkey", "version": "8.1.1"}, (8, 1)),
    ({b"server": b"redis"}, (0, 0))])
def test_version_from_hello(hello: object, version: tuple[int, int]) -> None:
    assert _version(hello) == version


def test_a_single_server_is_never_sharded_and_never_asked() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    server.connected = False  # any command would fail
    assert sharded_pubsub(client) is False


def test_job_events_stay_classic() -> None:
    """They are published from the settle script, under the queue's slot."""
    assert EVENTS_CHANNEL in CLASSIC_CHANNELS
