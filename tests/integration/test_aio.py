"""redisq.aio: asyncio producers share messages, records and rules with the sync App."""

from __future__ import annotations

import asyncio

import pytest

from redisq import App, DuplicateJob, JobFailed, config
from redisq.aio import AsyncProducer
from redisq.worker import Worker


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
