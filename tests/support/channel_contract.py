"""The pub/sub contract, run on fakeredis (tests/unit/test_channel_fake.py) and on a real server
(tests/integration/test_channel_contract.py).

A binding subclasses :class:`ChannelContract` as ``Test...`` and provides two fixtures:
``r``, a client on an empty database, and ``cut``, a function that breaks the connection of a
given subscriber the way that backend can (the subscriber must notice and heal by itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisq.broker.channel import Channel, ChannelMessage, Subscriber
from tests.support.wait import wait_until

Cut = Callable[[Subscriber], None]


def make_sub(r: redis.Redis, **kwargs: Any) -> Subscriber:
    kwargs.setdefault("ping_interval_s", 0.2)
    kwargs.setdefault("pong_timeout_s", 0.5)
    sub = Subscriber(r, **kwargs)
    sub.get(0)  # connect and subscribe now: later publishes must reach it
    return sub


def collect(sub: Subscriber, n: int, timeout_s: float = 3.0) -> list[ChannelMessage]:
    """The next ``n`` messages (fails after ``timeout_s``)."""
    out: list[ChannelMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} messages: {out}"
        msg = sub.get(0.1)
        if msg is not None:
            out.append(msg)
    return out


def quiet(sub: Subscriber, for_s: float = 0.1) -> bool:
    """True if no message arrives for ``for_s`` seconds."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if sub.get(0.05) is not None:
            return False
    return True


def numsub(r: redis.Redis, channel: str) -> int:
    return int(r.pubsub_numsub(channel)[0][1])


class ChannelContract:
    """Tests every binding must pass. Fixtures ``r`` and ``cut`` come from the subclass."""

    def test_channel_and_pattern_delivery(self, r: redis.Redis) -> None:
        """A message reaches channel and pattern subscribers (pattern named), others not."""
        sub = make_sub(r, channels=["news"], patterns=["orders.*"])
        assert Channel(r, "news").publish(b"n1") == 1
        assert Channel(r, "orders.created").publish("o1") == 1
        assert Channel(r, "elsewhere").publish(b"x") == 0
        got = collect(sub, 2)
        assert [(m.channel, m.pattern, m.data) for m in got] == [
            ("news", None, b"n1"), ("orders.created", "orders.*", b"o1")]
        assert quiet(sub)
        sub.close()

    def test_durable_messages_carry_increasing_stream_ids(self, r: redis.Redis) -> None:
        sub = make_sub(r, durable=["log"])
        chan = Channel(r, "log", durable=True)
        for i in range(3):
            assert chan.publish(f"e{i}".encode()) == 1
        got = collect(sub, 3)
        assert [m.data for m in got] == [b"e0", b"e1", b"e2"]
        ids = [tuple(map(int, (m.id or "").split("-"))) for m in got]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert not any(m.replayed for m in got)
        sub.close()

    def test_durable_subscriber_replays_what_it_missed_once_in_order(
            self, r: redis.Redis, cut: Cut) -> None:
        """Cut off, then healed: what was published meanwhile arrives exactly once, in
        order, flagged as replayed, followed by live messages."""
        sub = make_sub(r, durable=["log"])
        chan = Channel(r, "log", durable=True)
        chan.publish(b"before")
        assert [m.data for m in collect(sub, 1)] == [b"before"]
        cut(sub)
        for i in range(5):
            chan.publish(f"gap{i}".encode())
        got = collect(sub, 5)
        assert [m.data for m in got] == [f"gap{i}".encode() for i in range(5)]
        assert all(m.replayed for m in got)
        chan.publish(b"after")
        assert [(m.data, m.replayed) for m in collect(sub, 1)] == [(b"after", False)]
        assert quiet(sub)
        assert sub.reconnects >= 1
        sub.close()

    def test_plain_subscriber_resubscribes_after_a_cut(self, r: redis.Redis, cut: Cut) -> None:
        """A non-durable subscriber misses what was sent while cut off (that is pub/sub) but
        is subscribed again, once, to channels and patterns."""
        sub = make_sub(r, channels=["news"], patterns=["p.*"])
        cut(sub)
        wait_until(lambda: sub.get(0.05) is None and sub.reconnects >= 1 and numsub(r, "news"),
                   3, what="the re-subscription")
        assert numsub(r, "news") == 1
        Channel(r, "news").publish(b"n")
        Channel(r, "p.1").publish(b"p")
        assert sorted(m.data for m in collect(sub, 2)) == [b"n", b"p"]
        sub.close()

    def test_subscribing_while_connected(self, r: redis.Redis) -> None:
        sub = make_sub(r, channels=["first"])
        sub.subscribe("second")
        sub.subscribe("log", durable=True)
        sub.psubscribe("pat.*")
        Channel(r, "second").publish(b"s")
        Channel(r, "log", durable=True).publish(b"l")
        Channel(r, "pat.x").publish(b"p")
        got = collect(sub, 3)
        assert [m.data for m in got] == [b"s", b"l", b"p"]
        assert got[1].id is not None
        sub.close()

    def test_durable_subscribe_while_connected_keeps_what_came_before_the_subscribe(
            self, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        """A message published after the start position is marked but before SUBSCRIBE
        reaches the server is in the stream only: it must be replayed, not skipped."""
        sub = make_sub(r, channels=["other"])
        real_xrevrange = r.xrevrange

        def mark_then_publish(*args: Any, **kwargs: Any) -> Any:
            result = real_xrevrange(*args, **kwargs)
            Channel(r, "log", durable=True).publish(b"between")
            return result

        monkeypatch.setattr(r, "xrevrange", mark_then_publish)
        sub.subscribe("log", durable=True)
        monkeypatch.undo()
        Channel(r, "log", durable=True).publish(b"next")
        assert [m.data for m in collect(sub, 2)] == [b"between", b"next"]
        sub.close()

    def test_first_connect_loses_nothing_published_once_subscribed(
            self, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        """A durable message published while the subscriber is already subscribed must be
        delivered, even if it lands while the subscriber is still reading its start position
        (it used to be taken for 'already replayed' and dropped)."""
        subscribed_at_publish: list[int] = []
        real_xrevrange = r.xrevrange

        def publish_then_mark(*args: Any, **kwargs: Any) -> Any:
            subscribed_at_publish.append(numsub(r, "log"))
            Channel(r, "log", durable=True).publish(b"racer")
            return real_xrevrange(*args, **kwargs)

        monkeypatch.setattr(r, "xrevrange", publish_then_mark)
        sub = make_sub(r, durable=["log"])
        monkeypatch.undo()
        Channel(r, "log", durable=True).publish(b"next")
        got = [m.data for m in collect(sub, 2 if subscribed_at_publish[0] else 1)]
        assert got == ([b"racer", b"next"] if subscribed_at_publish[0] else [b"next"])
        sub.close()

    def test_foreign_message_on_a_durable_channel_does_not_break_the_subscriber(
            self, r: redis.Redis) -> None:
        """A plain PUBLISH (no stream id) on a durable channel is delivered as it came."""
        sub = make_sub(r, durable=["log"])
        r.publish("log", b"raw, no id")
        Channel(r, "log", durable=True).publish(b"proper")
        got = collect(sub, 2)
        assert [(m.data, m.id is None) for m in got] == [(b"raw, no id", True),
                                                         (b"proper", False)]
        sub.close()

    def test_ping_answered_keeps_the_connection(self, r: redis.Redis) -> None:
        """PINGs every 30 ms on an idle subscription are answered: no reconnect."""
        sub = make_sub(r, channels=["idle"], ping_interval_s=0.03, pong_timeout_s=0.3)
        assert quiet(sub, 0.2)
        assert sub.reconnects == 0 and not sub.outage.down
        sub.close()

    def test_missing_pong_means_reconnect(self, r: redis.Redis) -> None:
        """A connection whose PINGs go unanswered is dropped and replaced, and the new one
        is subscribed."""
        sub = make_sub(r, channels=["news"], ping_interval_s=0.05, pong_timeout_s=0.1)
        assert sub._pubsub is not None
        sub._pubsub.ping = lambda *a, **k: None  # type: ignore[method-assign,assignment]
        wait_until(lambda: sub.get(0.05) is None and sub.reconnects >= 1, 3,
                   what="a reconnect after the PONG deadline")
        Channel(r, "news").publish(b"n")
        assert [m.data for m in collect(sub, 1)] == [b"n"]
        sub.close()

    def test_run_survives_a_failing_callback_and_stops_on_close(self, r: redis.Redis) -> None:
        """A callback that raises is logged and skipped; close() (here from the callback)
        ends run() and drops the connection."""
        sub = make_sub(r, channels=["news"])
        seen: list[bytes] = []

        def callback(m: ChannelMessage) -> None:
            seen.append(m.data)
            if m.data == b"bad":
                raise RuntimeError("callback bug")
            sub.close()

        chan = Channel(r, "news")
        chan.publish(b"bad")
        chan.publish(b"good")
        t = threading.Thread(target=sub.run, args=(callback,), daemon=True)
        t.start()
        t.join(3)
        assert not t.is_alive() and seen == [b"bad", b"good"]
        assert sub._pubsub is None and numsub(r, "news") == 0
