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


def test_map_messages_equal_the_envelope_encoding(fake_redis: redis.Redis) -> None:
    """map() encodes the shared fields once (a template); each message must still decode to
    exactly the envelope delay() would send, with "id" first (reserve.lua matches it there)."""
    import json

    from redisq.model import Envelope

    app = make_app(fake_redis)

    @app.task(name="t.mix")
    def mix(*args: object, **kwargs: object) -> None: ...

    calls = [(), ("é", [1, {"a": None}]), (((), {"k": "v", "n": 2.5})), ((7,), {"x": [True]})]
    jobs = mix.map(calls, queue="bulk")
    bodies = fake_redis.lrange("redisq:{bulk}:pending", 0, -1)[::-1]  # LPUSH: newest first
    expected = [((), {}), (("é", [1, {"a": None}]), {}), ((), {"k": "v", "n": 2.5}),
                ((7,), {"x": [True]})]
    for job, body, (args, kwargs) in zip(jobs, bodies, expected, strict=True):
        assert body.startswith(b'{"id":"' + job.id.encode() + b'"')
        env = Envelope.from_dict(json.loads(body))
        assert (env.id, env.task, env.queue, env.attempt) == (job.id, "t.mix", "bulk", 1)
        assert env.args == list(args) and env.kwargs == kwargs and env.enqueued_at > 0
        # The bulk record stores status, task and enqueue time (the message lives in the
        # queue only); reading fills in the rest.
        info = app.job(job.id).info()
        assert fake_redis.hkeys(f"redisq:{{bulk}}:job:{job.id}") == [b"status", b"task",
                                                                     b"enqueued_at"]
        assert {k: info[k] for k in ("id", "status", "task", "queue", "attempts")} == {
            "id": job.id, "status": "queued", "task": "t.mix", "queue": "bulk", "attempts": "0"}
        assert float(info["enqueued_at"]) == env.enqueued_at


def test_cancel_takes_the_message_out_and_is_too_late_once_reserved(fake_redis: redis.Redis) -> None:
    from redisq.broker.consumer import Consumer

    app = make_app(fake_redis)
    first, second = app.enqueue("t.x"), app.enqueue("t.x")
    later = app.enqueue("t.x", delay_s=60)
    assert first.cancel() and later.cancel()
    assert fake_redis.llen("redisq:{default}:pending") == 1
    assert fake_redis.zcard("redisq:{default}:delayed") == 0
    Consumer(fake_redis, ["default"]).reserve(1)  # a worker took the second one
    assert second.cancel() is False and second.status == "queued"


def test_prepared_message_is_byte_for_byte_the_envelope_encoding(fake_redis: redis.Redis) -> None:
    """prepare() builds a JSON message from a cached template; it must be exactly what the
    serializer makes of the envelope (key order included: "id" first for reserve.lua)."""
    app = make_app(fake_redis)

    @app.task(name="t.tpl", queue="q1")
    def tpl(*args: object, **kwargs: object) -> None: ...

    cases = [((), {}), ((1, "é", None, [1.5, True]), {}), ((), {"k": {"x": "y"}}),
             (("a\"b\\c\n",), {"n": -0.1})]
    for args, kwargs in cases:
        for queue in (None, "other"):
            for job_id in (None, "caller/id:é"):
                p = app.prepare("t.tpl", args, kwargs, queue, job_id)
                assert p.message == app.serializer.dumps(p.env.to_dict())
