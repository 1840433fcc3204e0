"""Jobs on fakeredis: the same job id while queued, bulk enqueue (map) and cancel. The pure
execute step is in test_execute.py, enqueue rules and locks in test_producing.py."""

from __future__ import annotations

import redis

from redisq import App


def make_app(r: redis.Redis) -> App:
    app = App("redis://unused")
    app._client = r
    return app


def test_same_job_id_while_queued_returns_it(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)
    a = app.enqueue("t.x", job_id="fixed")
    b = app.enqueue("t.x", job_id="fixed")
    assert a.id == b.id == "fixed" and b.created is False
    assert fake_redis.llen("redisq:{default}:pending") == 1


def test_map_bulk(fake_redis: redis.Redis) -> None:
    app = make_app(fake_redis)

    @app.task(name="t.sq")
    def sq(x: int) -> int:
        return x * x

    jobs = sq.map([1, (2,), ((3,), {})])
    assert len(jobs) == 3 and len({j.id for j in jobs}) == 3
    assert all(j.status == "queued" for j in jobs)
    assert fake_redis.llen("redisq:{default}:pending") == 3


def test_cancel_takes_the_message_out_and_is_too_late_once_reserved(fake_redis: redis.Redis) -> None:
    from redisq.consumer import Consumer

    app = make_app(fake_redis)
    first, second = app.enqueue("t.x"), app.enqueue("t.x")
    later = app.enqueue("t.x", delay_s=60)
    assert first.cancel() and later.cancel()
    assert fake_redis.llen("redisq:{default}:pending") == 1
    assert fake_redis.zcard("redisq:{default}:delayed") == 0
    Consumer(fake_redis, ["default"]).reserve(1)  # a worker took the second one
    assert second.cancel() is False and second.status == "queued"
