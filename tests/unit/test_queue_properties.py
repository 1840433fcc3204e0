"""Property: whatever the interleaving of put / reserve / ack / nack / a consumer dying and
being recovered, no message is lost and none is acknowledged twice."""

from __future__ import annotations

from collections import Counter

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from redisq.backend import keys
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue
from redisq.model import Message

ops = st.lists(st.tuples(st.sampled_from(["put", "reserve", "ack", "nack", "crash"]),
                         st.integers(0, 1), st.integers(1, 4)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_no_loss_no_double_ack(steps: list[tuple[str, int, int]]) -> None:
    r = fakeredis.FakeRedis()
    q = Queue(r, "p")
    consumers = [Consumer(r, ["p"], consumer_id=f"c{i}", block_timeout_s=0.01) for i in (0, 1)]
    held: list[list[Message]] = [[], []]
    put, acked = 0, Counter[bytes]()
    for op, who, n in steps:
        c = consumers[who]
        if op == "put":
            q.put_many(f"m{put + i}".encode() for i in range(n))
            put += n
        elif op == "reserve":
            held[who] += c.reserve(n, timeout_s=0)
        elif op == "ack" and held[who]:
            done, held[who] = held[who][:n], held[who][n:]
            assert c.ack(done) == len(done)
            acked.update(m.body for m in done)
        elif op == "nack" and held[who]:
            c.nack(held[who].pop())
        elif op == "crash":
            # The consumer dies holding its messages; its lease expires; the other recovers.
            r.delete(keys.lease("p", c.id))
            consumers[1 - who].requeue_stale()
            consumers[who] = Consumer(r, ["p"], consumer_id=f"c{who}-{put}", block_timeout_s=0.01)
            held[who] = []
    # Drain what is left with a fresh consumer.
    last = Consumer(r, ["p"], consumer_id="drain", block_timeout_s=0.01)
    for who, c in enumerate(consumers):
        if held[who]:
            r.delete(keys.lease("p", c.id))
    last.requeue_stale()
    while got := last.reserve(50, timeout_s=0):
        last.ack(got)
        acked.update(m.body for m in got)
    assert set(acked) == {f"m{i}".encode() for i in range(put)}  # nothing lost
    assert all(v == 1 for v in acked.values())  # each acknowledged once
