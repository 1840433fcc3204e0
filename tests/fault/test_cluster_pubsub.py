"""Sharded pub/sub on a real three-master Redis Cluster (7.0+, ``redis+cluster://``): channels
whose slots live on different nodes, plain and durable, are published with SPUBLISH and
received over one SSUBSCRIBE connection per node; the events channel and patterns stay classic;
a node that restarts or freezes costs only its own channels their connection (the others keep
flowing), and its durable channel loses nothing.

Timings are shrunk: PING every 0.3 s, PONG due within 0.5 s, read deadline 1 s, backoff
capped at 0.5 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redisq.backend import keys
from redisq.backend.backoff import Backoff
from redisq.backend.cluster import sharded_pubsub
from redisq.backend.connection import ConnectionOptions, Outage, connect
from redisq.backend.embedded import RedisServer
from redisq.broker.channel import Channel, ChannelMessage, Subscriber
from tests.support.cluster import ClusterSet
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)
PING_S, PONG_S = 0.3, 0.5

pytestmark = pytest.mark.slow


@pytest.fixture
def client(cluster: ClusterSet) -> Iterator[redis.Redis]:
    c = connect(cluster.url, "test-pub", FAST)
    yield c
    c.close()


def one_channel_per_node(cluster: ClusterSet, prefix: str) -> dict[int, str]:
    """A channel name for each node (port → name), found by hashing candidate names."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(cluster.nodes):
        name = f"{prefix}{i}"
        found.setdefault(cluster.node_of(name).port, name)  # a channel hashes like a key
        i += 1
    return found


def node(cluster: ClusterSet, port: int) -> RedisServer:
    return next(n for n in cluster.nodes if n.port == port)


def pubsub(server: RedisServer, *args: str) -> Any:
    admin = server.client()
    try:
        return admin.execute_command("PUBSUB", *args)
    finally:
        admin.close()


def shard_subscribers(server: RedisServer, channel: str) -> int:
    return int(pubsub(server, "SHARDNUMSUB", channel)[1])


def classic_publish(server: RedisServer, channel: str, body: bytes) -> None:
    admin = server.client()
    try:
        admin.publish(channel, body)
    finally:
        admin.close()


def make_subscriber(cluster: ClusterSet, **kwargs: object) -> Subscriber:
    return Subscriber(connect(cluster.url, "test-sub", FAST), ping_interval_s=PING_S,
                      pong_timeout_s=PONG_S,
                      outage=Outage("test-sub", Backoff(base_s=0.05, cap_s=0.5)),
                      **kwargs)  # type: ignore[arg-type]


class Loop(threading.Thread):
    """sub.get() until stopped, keeping every message with the time it arrived."""

    def __init__(self, sub: Subscriber) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.got: list[tuple[float, ChannelMessage]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            msg = self.sub.get(0.2)
            if msg is not None:
                with self.lock:
                    self.got.append((time.monotonic(), msg))

    def bodies(self, channel: str, since: float = 0.0) -> list[bytes]:
        with self.lock:
            return [m.data for t, m in self.got if m.channel == channel and t >= since]

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)
        self.sub.close()
        self.sub.client.close()


def test_channels_on_three_nodes_use_spublish_and_ssubscribe(cluster: ClusterSet,
                                                             client: redis.Redis) -> None:
    """Plain and durable channels on every node: every message arrives once and in order,
    publish() counts the one subscriber, and the servers list the channels as shard channels
    (on their own node only), never as classic ones."""
    assert sharded_pubsub(client)
    plain = one_channel_per_node(cluster, "plain")
    durable = one_channel_per_node(cluster, "log")
    loop = Loop(make_subscriber(cluster, channels=plain.values(), durable=durable.values()))
    loop.start()
    try:
        every = {**{ch: p for p, ch in plain.items()}, **{ch: p for p, ch in durable.items()}}
        wait_until(lambda: all(shard_subscribers(node(cluster, p), ch) == 1
                               for ch, p in every.items()), 5, what="SSUBSCRIBE on each node")
        for ch, port in every.items():
            assert ch.encode() in pubsub(node(cluster, port), "SHARDCHANNELS")
            for other in cluster.nodes:
                assert ch.encode() not in pubsub(other, "CHANNELS"), "a classic SUBSCRIBE"
                if other.port != port:
                    assert ch.encode() not in pubsub(other, "SHARDCHANNELS")
        chans = {ch: Channel(client, ch, durable=ch in durable.values()) for ch in every}
        for i in range(50):
            for ch, chan in chans.items():
                assert chan.publish(f"{ch}-{i}".encode()) == 1  # the subscriber, on that node
        for ch in every:
            want = [f"{ch}-{i}".encode() for i in range(50)]
            wait_until(lambda ch=ch, want=want: loop.bodies(ch) == want, 3, what=f"{ch}'s messages")
        with loop.lock:
            ids = [m.id for _, m in loop.got if m.channel in durable.values()]
        assert len(ids) == 150 and all(ids), "durable messages carry their stream id"
        assert Channel(client, "nobody-listens").publish(b"x") == 0
        # A classic PUBLISH to a shard channel reaches nobody: the subscriptions are sharded.
        assert client.publish(next(iter(plain.values())), b"classic") == 0
    finally:
        loop.stop()


def test_events_channel_and_patterns_stay_classic(cluster: ClusterSet,
                                                  client: redis.Redis) -> None:
    """Job events are published from scripts under other slots, so they stay classic; sharded
    pub/sub has no patterns. Both share one classic connection, and classic PUBLISH reaches
    it from any node."""
    loop = Loop(make_subscriber(cluster, channels=[keys.EVENTS_CHANNEL], patterns=["orders.*"]))
    loop.start()
    try:
        wait_until(lambda: sum(int(pubsub(n, "NUMSUB", keys.EVENTS_CHANNEL)[1])
                               for n in cluster.nodes) == 1, 5, what="a classic SUBSCRIBE")
        wait_until(lambda: sum(int(pubsub(n, "NUMPAT")) for n in cluster.nodes) == 1, 5,
                   what="a PSUBSCRIBE")
        assert not any(pubsub(n, "SHARDCHANNELS") for n in cluster.nodes)
        for n in cluster.nodes:  # whichever node a publisher reaches
            classic_publish(n, keys.EVENTS_CHANNEL, f"event-{n.port}".encode())
            classic_publish(n, "orders.new", f"order-{n.port}".encode())
        wait_until(lambda: len(loop.bodies(keys.EVENTS_CHANNEL)) == 3, 3, what="every event")
        wait_until(lambda: len(loop.bodies("orders.new")) == 3, 3, what="every pattern match")
        Channel(client, keys.EVENTS_CHANNEL).publish(b"via-channel")
        wait_until(lambda: b"via-channel" in loop.bodies(keys.EVENTS_CHANNEL), 3,
                   what="Channel.publish on the events channel (classic PUBLISH)")
    finally:
        loop.stop()


def test_url_option_keeps_a_cluster_classic(cluster: ClusterSet) -> None:
    """``?sharded_pubsub=no`` (mixed-version upgrades, pattern subscribers that must see
    every channel): PUBLISH and SUBSCRIBE as before, and a pattern sees Channel.publish."""
    url = cluster.url + "/?sharded_pubsub=no"
    client = connect(url, "test-pub", FAST)
    assert not sharded_pubsub(client)
    sub = Subscriber(connect(url, "test-sub", FAST), channels=["news"], durable=["log"],
                     patterns=["ne*"], ping_interval_s=PING_S, pong_timeout_s=PONG_S)
    loop = Loop(sub)
    loop.start()
    try:
        wait_until(lambda: sum(int(pubsub(n, "NUMSUB", "news")[1]) for n in cluster.nodes) == 1,
                   5, what="a classic SUBSCRIBE")
        assert not any(pubsub(n, "SHARDCHANNELS") for n in cluster.nodes)
        Channel(client, "news").publish(b"plain")
        Channel(client, "log", durable=True).publish(b"durable")
        wait_until(lambda: loop.bodies("news") == [b"plain", b"plain"]  # channel and pattern
                   and loop.bodies("log") == [b"durable"], 3, what="classic delivery")
    finally:
        loop.stop()
        client.close()


class Publisher(threading.Thread):
    """Publishes ``<channel>-<i>`` every 10 ms until stopped (one thread per channel: a publish
    to a frozen node must not slow the others); ``acked`` keeps what publish() returned for.
    A failed publish is not repeated (while its node is down)."""

    def __init__(self, client: redis.Redis, channel: str, durable: bool) -> None:
        super().__init__(daemon=True)
        self.chan = Channel(client, channel, durable=durable)
        self.acked: list[bytes] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            body = f"{self.chan.name}-{i}".encode()
            i += 1
            try:
                self.chan.publish(body)
            except redis.RedisError:
                continue
            self.acked.append(body)
            self.stop_event.wait(0.01)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


@pytest.mark.parametrize("fault", ["restart", "freeze"])
def test_a_node_fault_costs_only_its_own_channels(cluster: ClusterSet, client: redis.Redis,
                                                  fault: str) -> None:
    """The node owning one plain and one durable channel is restarted (its connections
    close) or frozen (SIGSTOP: only that leg's PONG deadline can notice). Channels on another
    node keep flowing meanwhile; afterwards the node's channels are subscribed there again,
    and each durable channel delivers every acknowledged message exactly once, in order."""
    plain = one_channel_per_node(cluster, "plain")
    durable = one_channel_per_node(cluster, "log")
    victim_port, other_port = sorted(plain)[:2]
    victim = node(cluster, victim_port)
    hit = [plain[victim_port], durable[victim_port]]
    spared = [plain[other_port], durable[other_port]]
    sub = make_subscriber(cluster, channels=[hit[0], spared[0]], durable=[hit[1], spared[1]])
    loop = Loop(sub)
    loop.start()
    pubs = {ch: Publisher(client, ch, durable=ch in durable.values()) for ch in hit + spared}
    try:
        wait_until(lambda: all(shard_subscribers(node(cluster, p), ch) == 1
                               for p, ch in ((victim_port, hit[0]), (victim_port, hit[1]),
                                             (other_port, spared[0]), (other_port, spared[1]))),
                   5, what="the SSUBSCRIBEs")
        for pub in pubs.values():
            pub.start()
        wait_until(lambda: all(len(loop.bodies(ch)) > 10 for ch in hit + spared), 3,
                   what="messages on every channel")
        if fault == "restart":
            victim.stop()
        else:
            victim.pause()
        wait_until(lambda: sub.outage.down, 3, what="the subscriber to notice")
        noticed = time.monotonic()
        wait_until(lambda: all(len(loop.bodies(ch, since=noticed)) > 20 for ch in spared), 3,
                   what="the other node's channels to keep flowing")
        if fault == "restart":
            victim.start()
        else:
            victim.resume()
        back = time.monotonic()
        wait_until(lambda: all(len(loop.bodies(ch, since=back)) > 5 for ch in hit), 6,
                   what="the victim node's channels to flow again")
        live_again = time.monotonic() - back
        assert shard_subscribers(victim, hit[0]) == 1
        for pub in pubs.values():
            pub.stop()
        for ch in (hit[1], spared[1]):
            acked = pubs[ch].acked
            wait_until(lambda ch=ch, acked=acked: set(acked) <= set(loop.bodies(ch)), 3,
                       what=f"every acknowledged message of {ch}")
            got = loop.bodies(ch)
            assert len(got) == len(set(got)), f"a message of {ch} arrived twice"
            assert [b for b in got if b in set(acked)] == acked, f"{ch} out of order"
        wait_until(lambda: not sub.outage.down and sub.reconnects >= 1, 2,
                   what="the reconnect to be counted")
        print(f"\n{fault}: the victim's channels flowed again {live_again:.2f} s after the "
              "node came back")
    finally:
        for pub in pubs.values():
            pub.stop()
        victim.resume()
        loop.stop()


def test_async_producer_on_a_cluster(cluster: ClusterSet) -> None:
    """redisq.aio on ``redis+cluster://``: jobs of queues on three nodes land on their nodes
    (each with its record), and publish() uses SPUBLISH like the synchronous side, so a
    sharded subscriber gets plain and durable messages on channels of every node."""
    import asyncio

    from redisq import App
    from redisq.aio import AsyncProducer

    app = App(cluster.url, options=FAST)
    queues = one_channel_per_node(cluster, "aq")  # a queue's keys hash like its name's tag
    plain = one_channel_per_node(cluster, "ap")
    durable = one_channel_per_node(cluster, "al")
    loop = Loop(make_subscriber(cluster, channels=plain.values(), durable=durable.values()))
    loop.start()
    try:
        wait_until(lambda: all(shard_subscribers(node(cluster, p), ch) == 1
                               for d in (plain, durable) for p, ch in d.items()), 5,
                   what="SSUBSCRIBE on each node")

        async def produce() -> list[tuple[str, str]]:
            async with AsyncProducer(app) as producer:
                jobs = [(q, (await producer.enqueue("t.any", (1,), queue=q)).id)
                        for q in queues.values()]
                for ch in [*plain.values(), *durable.values()]:
                    assert await producer.publish(ch, {"ch": ch},
                                                  durable=ch in durable.values()) == 1
                return jobs

        jobs = asyncio.run(produce())
        for q, jid in jobs:
            owner = cluster.node_of(keys.pending(q)).client()
            assert owner.llen(keys.pending(q)) == 1 and owner.exists(keys.job(q, jid)) == 1
            owner.close()
        for ch in [*plain.values(), *durable.values()]:
            wait_until(lambda ch=ch: len(loop.bodies(ch)) == 1, 3, what=f"{ch}'s message")
    finally:
        loop.stop()
        app.close()
