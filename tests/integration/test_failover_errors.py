"""A server that stops being a usable master (demoted to a replica, or short of replicas) is
treated as a lost connection, not as a failed command: see ``redisq/backend/failover.py``. And durable
enqueue (``wait_replicas``) on a master without replicas raises NotReplicated."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.exceptions import MasterDownError, ReadOnlyError, ResponseError

from redisq import App, NotReplicated
from redisq.backend.connection import ConnectionOptions, connect
from redisq.backend.embedded import RedisServer, free_port
from redisq.backend.failover import is_wrong_node
from redisq.broker.consumer import Consumer
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)


def demote(server: RedisServer) -> None:
    """Make ``server`` a replica of a master that does not exist: it answers, read-only."""
    server.client().replicaof("127.0.0.1", free_port())


@pytest.mark.parametrize(("exc", "wrong"), [
    (ReadOnlyError("You can't write against a read only replica."), True),
    (MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
     True),
    (ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed "
                   "(master -> replica?)"), True),
    (ResponseError("NOREPLICAS Not enough good replicas to write."), True),
    (ResponseError("Error running script (call to f_1): @user_script:1: -READONLY You can't "
                   "write against a read only replica."), True),
    (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (redis.ConnectionError("gone"), False),
])
def test_wrong_node_replies(exc: Exception, wrong: bool) -> None:
    assert is_wrong_node(exc) is wrong


def test_a_demoted_master_is_a_lost_connection(server: RedisServer) -> None:
    app = App(server.url, options=FAST)
    app.enqueue("t.any", (1,))  # the lean wire connection and the pool both connected
    demote(server)
    with pytest.raises(redis.ConnectionError, match="not a usable master"):
        app.enqueue("t.any", (2,))  # lean wire, delay()'s transaction: READONLY when queued
    with pytest.raises(redis.ConnectionError, match="not a usable master"):
        app.enqueue("t.any", (2,), job_id="given")  # lean wire: READONLY from the script
    with pytest.raises(redis.ConnectionError, match="not a usable master"):
        app.client.set("k", "v")  # pooled connection
    app.close()


def test_a_blocked_reserve_ended_by_a_demotion_is_an_outage(server: RedisServer) -> None:
    """BLMOVE blocked when the server becomes a replica ends with UNBLOCKED: reserve()
    must report an outage and return, not raise into the worker loop."""
    consumer = Consumer(connect(server.url, options=FAST), ["jobs"], consumer_id="c1",
                        block_timeout_s=5.0)
    consumer.outage.sleep = lambda _s: None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(consumer.reserve(1, 5.0)))
    waiter.start()
    wait_until(lambda: int(server.client().info("clients")["blocked_clients"]) == 1, 3,
               what="the blocked BLMOVE")
    started = time.monotonic()
    demote(server)
    waiter.join(3)
    assert got == [[]] and time.monotonic() - started < 2
    assert consumer.outage.down


def test_a_master_short_of_replicas_is_a_lost_connection(server: RedisServer) -> None:
    app = App(server.url, options=FAST)
    app.enqueue("t.any", (0,))  # the queue's name is registered (a write of its own)
    server.client().config_set("min-replicas-to-write", 1)
    before = server.client().dbsize()
    with pytest.raises(redis.ConnectionError, match="NOREPLICAS"):
        app.enqueue("t.any", (1,))  # the transaction
    with pytest.raises(redis.ConnectionError, match="NOREPLICAS"):
        app.enqueue("t.any", (1,), job_id="given")  # the script
    assert server.client().dbsize() == before  # nothing half-written
    assert server.client().llen("redisq:{default}:pending") == 1
    app.close()


def test_durable_enqueue_without_a_replica(server: RedisServer) -> None:
    """WAIT finds no replica: NotReplicated. The job is on the master all the same, so a
    retry with the same id does not queue it twice."""
    app = App(server.url, options=FAST, wait_replicas=1, wait_timeout_s=0.05)
    with pytest.raises(NotReplicated, match="0 of 1 replica"):
        app.enqueue("t.any", (1,), job_id="once")
    with pytest.raises(NotReplicated):
        app.enqueue("t.any", (1,), job_id="once")
    with pytest.raises(NotReplicated):
        app.enqueue_many("t.any", [((n,), {}) for n in range(3)])
    with pytest.raises(NotReplicated):
        app.enqueue("t.any", (2,))  # a fresh id: the MULTI/EXEC path, WAIT after its EXEC
    counts = app.queue("default").counts()
    assert counts["depth"] == 5 and counts["enqueued"] == 5
    app.close()


def test_async_durable_enqueue_without_a_replica(server: RedisServer) -> None:
    """redisq.aio with ``wait_replicas``: the script and WAIT in one pipelined round trip on
    one connection; no replica confirms, so NotReplicated, and the job is on the master."""
    import asyncio

    from redisq.aio import AsyncProducer

    app = App(server.url, options=FAST, wait_replicas=1, wait_timeout_s=0.05)

    async def produce() -> None:
        async with AsyncProducer(app) as producer:
            with pytest.raises(NotReplicated, match="0 of 1 replica"):
                await producer.enqueue("t.any", (1,), job_id="async-once")
            server.client().script_flush()  # NOSCRIPT: loaded and sent again
            with pytest.raises(NotReplicated):
                await producer.enqueue("t.any", (1,), job_id="async-once")

    asyncio.run(produce())
    assert app.queue("default").counts()["depth"] == 1  # the retry did not queue it twice
    app.close()


def test_durable_enqueue_with_a_replica(server: RedisServer, tmp_path) -> None:
    import asyncio

    from redisq.aio import AsyncProducer

    server.client().config_set("repl-diskless-sync-delay", 0)  # sync at once, not in 5 s
    replica = RedisServer(tmp_path / "replica", port=free_port(),
                          extra_args=("--replicaof", "127.0.0.1", str(server.port))).start()
    try:
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up",
                   5, what="the replica to sync")
        app = App(server.url, options=FAST, wait_replicas=1, wait_timeout_s=1.0)
        job = app.enqueue("t.any", (1,))
        app.enqueue_many("t.any", [((n,), {}) for n in range(600)])  # two script chunks

        async def produce() -> str:
            async with AsyncProducer(app) as producer:
                return (await producer.enqueue("t.any", (2,))).id

        async_id = asyncio.run(produce())
        # WAIT returned: the replica has all of them, without waiting any longer.
        for jid in (job.id, async_id):
            assert replica.client().exists(f"redisq:{{default}}:job:{jid}") == 1
        assert replica.client().llen("redisq:{default}:pending") == 602
        app.close()
    finally:
        replica.kill()


def test_lean_connections_ask_sentinel_on_every_connect() -> None:
    """The hot path's per-thread connections are made from the client's own connection
    class and kwargs: for Sentinel, a class that looks the master up when it connects, with
    the pool's Sentinel proxy (no server needed: nothing connects here)."""
    from redisq.backend.failover import FailoverSentinelConnection
    from redisq.backend.wire import wire_for

    client = connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0")
    wire = wire_for(client)
    assert wire._cls is FailoverSentinelConnection
    assert wire._kwargs["connection_pool"].service_name == "mymaster"
