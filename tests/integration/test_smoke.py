from redisq.backend.connection import connect
from redisq.broker.consumer import Consumer
from redisq.broker.queue import Queue


def test_put_reserve_ack_roundtrip(redis_url: str) -> None:
    client = connect(redis_url, role="test")
    q = Queue(client, "smoke")
    q.put_many([b"a", b"b", b"c"])
    c = Consumer(client, ["smoke"], lease_s=5, block_timeout_s=0.5)
    got = c.reserve(10)
    assert [m.body for m in got] == [b"a", b"b", b"c"]
    assert c.ack(got) == 3
    assert q.counts()["acked"] == 3
    assert c.reserve(1, timeout_s=0.1) == []
