"""redisq.aio: asyncio producers share messages, records and rules with the sync App."""

from __future__ import annotations

import asyncio

import pytest

from redisq import App, DuplicateJob, JobFailed, config
from redisq.aio import AsyncProducer
from redisq.worker.prodcons import Worker


def test_async_producer_end_to_end(redis_url: str) -> None:
    app = App(redis_url)

    @app.task(name="a.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="a.once", unique_by="key", on_duplicate="raise", retries=0)
    def once(key: str) -> None:
        raise ValueError("no")

    async def produce() -> tuple[list[int], object]:
        async with AsyncProducer(app, max_connections=8) as producer:
            first = await producer.enqueue("a.add", args=(1, 2))
            many = await producer.enqueue_many("a.add", [(i, i) for i in range(50)],
                                               concurrency=5)
            failing = await producer.enqueue("a.once", args=("k",))
            with pytest.raises(DuplicateJob):
                await producer.enqueue("a.once", args=("k",))
            with pytest.raises(TypeError):
                await producer.enqueue("a.add", args=(1,))
            assert await producer.publish("nobody", {"x": 1}) == 0
            await asyncio.to_thread(Worker(app, config.load(
                {"burst": True, "block_timeout_s": 0.2, "lease_s": 1}, {})).run)
            results = [await first.result(2)] + [await j.result(2) for j in many[:3]]
            return results, failing

    results, failing = asyncio.run(produce())
    assert results == [3, 0, 2, 4]

    async def check_failure() -> None:
        async with AsyncProducer(app) as producer:
            with pytest.raises(JobFailed):
                await producer.job(failing.id, "default").result(2)  # type: ignore[attr-defined]

    asyncio.run(check_failure())


def test_async_client_per_url_scheme() -> None:
    """Sentinel URLs get a Sentinel-managed pool (the master looked up per connection, with
    redisq's deadlines); cluster URLs a cluster client, except for durable enqueue, which is
    refused with a clear error. No server needed (both connect lazily)."""
    from redis.asyncio.sentinel import SentinelConnectionPool

    from redisq.aio import async_client
    from redisq.backend.connection import ConnectionOptions
    from redisq.errors import ConfigError

    opts = ConnectionOptions(block_timeout_s=1.0, read_margin_s=0.5, connect_timeout_s=0.25)
    client = async_client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/3", opts, 4)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 3 and pool.max_connections == 4
    assert pool.connection_kwargs["socket_timeout"] == opts.socket_timeout_s
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels
            ] == [1, 2]
    from redis.asyncio.cluster import RedisCluster

    cluster = async_client("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/", opts, 4)
    assert isinstance(cluster, RedisCluster)
    assert [n.port for n in cluster.nodes_manager.startup_nodes.values()] == [7000, 7001]
    with pytest.raises(ConfigError, match="Cluster"):
        AsyncProducer(App("redis+cluster://127.0.0.1:7000/", wait_replicas=1))
