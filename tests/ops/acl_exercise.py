"""Everything redisq does against Redis, in a couple of seconds: producing (single, bulk,
delayed, unique, durable enqueue), cancelling, locks, a prodcons worker with the scheduler
inside (retries, dead letters, periodic jobs, recovering a dead worker's job), a pubsub worker
(plain, durable and pattern channels), operator actions (requeue, purge, stats, registry,
`redisq health`), the web app (with a job in progress), the asyncio producer and workflows
(a chain, a chord, depends_on, their progress).
tests/ops/test_acl.py runs it as the ACL user of docs/security.md."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from redisq import App, JobFailed, NotReplicated, chain, group
from redisq.aio import AsyncProducer
from redisq.backend import keys
from redisq.backend.registry import Registry
from redisq.ops.cli import main as cli_main
from redisq.ops.stats import snapshot
from redisq.worker.pubsub import PubSubWorker
from tests.support.inproc import running
from tests.support.wait import wait_until
from webapp import create_app


@dataclass
class Exercise:
    app: App
    seen: dict[str, list[object]] = field(
        default_factory=lambda: {"news": [], "feed": [], "proj": [], "ticks": []})
    release: threading.Event = field(default_factory=threading.Event)


def build(url: str) -> Exercise:
    ex = Exercise(App(url))
    app = ex.app

    @app.task(name="acl.add", retries=1, retry_backoff_s=0.01)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="acl.fail", retries=1, retry_backoff_s=0.01)
    def fail() -> None:
        raise ValueError("no")

    @app.task(name="acl.once", unique_by="key")
    def once(key: str) -> str:
        return key

    @app.task(name="acl.total")
    def total(values: list) -> int:
        return sum(values)

    @app.task(name="acl.hold", retries=0)
    def hold() -> None:
        ex.release.wait(3)

    @app.periodic(every_s=0.2, name="acl.tick")
    def tick() -> None:
        ex.seen["ticks"].append(1)

    for channel, durable, pattern in (("news", False, False), ("feed", True, False),
                                      ("proj.*", False, True)):
        name = channel.split(".")[0]
        app.subscriber(channel, durable=durable, pattern=pattern)(
            lambda m, name=name: ex.seen[name].append(m))
    return ex


def produce_and_work(ex: Exercise) -> None:
    app, seen = ex.app, ex.seen
    add, fail, once = (app.tasks[n] for n in ("acl.add", "acl.fail", "acl.once"))
    job, bad = add.delay(1, 2), fail.delay()
    later = add.enqueue(args=(5, 5), delay_s=0.3)
    assert add.enqueue(args=(0, 0), delay_s=60).cancel()
    assert once.delay("k").id == once.delay("k").id
    add.map([(1, 1), (2, 2)])
    with app.lock("acl", ttl_s=2) as lock:
        assert lock.extend()
    # A dead worker's job: in the processing list of a consumer without a lease; a live worker
    # gives it back (requeue_stale.lua) and runs it.
    orphan = add.delay(20, 22)
    app.client.sadd(keys.consumers("default"), "ghost")
    app.client.lmove(keys.pending("default"), keys.processing("default", "ghost"), "RIGHT", "LEFT")
    with running(app, with_scheduler=True) as worker, running(app, PubSubWorker):
        assert job.result(5) == 3 and later.result(5) == 10 and once.delay("k").result(5) == "k"
        assert orphan.result(4) == 42
        with pytest.raises(JobFailed):
            bad.result(5)
        wait_until(lambda: len(Registry(app.client).workers()) == 2, 5, what="2 workers")
        wait_until(lambda: app.publish("news", {"n": 1}) and seen["news"], 5, what="news")
        app.publish("feed", {"n": 2}, durable=True)
        app.publish("proj.7", {"n": 3})
        wait_until(lambda: seen["feed"] and seen["proj"] and seen["ticks"], 5, what="messages")
        health = CliRunner().invoke(cli_main, ["health", "--url", app.url, "--worker-id",
                                               worker.id])
        assert health.exit_code == 0, health.output
        web(ex)
        aio(app)
        workflows(app)
    assert app.requeue_dead("default") == 1
    assert app.queue("default").purge() == 1
    assert snapshot(app.client)["queues"]["default"]["depth"] == 0
    with pytest.raises(NotReplicated):  # WAIT: no replica here, so it cannot confirm
        App(app.url, wait_replicas=1, wait_timeout_s=0.05).enqueue("acl.add", args=(1, 1))


def workflows(app: App) -> None:
    add, total = app.tasks["acl.add"], app.tasks["acl.total"]
    flow = chain(add.s(1, 2), add.s(10)).delay()
    chord = group([add.s(1, 1), add.s(2, 2)]).then(total.s()).delay()
    after = add.enqueue(args=(3, 4), depends_on=[flow])
    assert snapshot(app.client)["workflows"]["groups_active"] in (0, 1)
    assert flow.result(5) == 13 and after.result(5) == 7
    assert chord.callback is not None and chord.callback.result(5) == 6
    assert chord.results(5) == [2, 4] and chord.status == "succeeded"


def web(ex: Exercise) -> None:
    app = ex.app
    client = create_app({"REDISQ_APP": app}).test_client()
    job_id = client.post("/prodcons", json={"task": "acl.add", "args": [2, 2]}).get_json()["job_id"]
    wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] == "succeeded", 5,
               what="web job")
    assert client.post("/pubsub", json={"channel": "news", "message": {"n": 4}}).status_code == 202
    app.tasks["acl.hold"].delay()
    wait_until(lambda: any(w.get("current") for w in Registry(app.client).workers()), 5,
               what="a job in progress in the registry")
    for path in ("/healthz", "/metrics", "/api/snapshot", "/"):  # progress of running jobs too
        assert client.get(path).status_code == 200, path
    ex.release.set()
    delayed = client.post("/prodcons", json={"task": "acl.add", "args": [1, 1], "delay_s": 60})
    assert client.post(f"/jobs/{delayed.get_json()['job_id']}/cancel", json={}).status_code == 200
    # A viewer follows a channel (the streams' shared subscription), then leaves (UNSUBSCRIBE).
    def receivers() -> int:
        return client.post("/pubsub", json={"channel": "board", "message": 1}).get_json()["receivers"]

    stream = client.get("/events/board", buffered=False)
    wait_until(lambda: receivers() == 1, 5, what="the web app's subscription")
    stream.close()
    wait_until(lambda: receivers() == 0, 5, what="the web app's unsubscribe")


def aio(app: App) -> None:
    async def produce() -> None:
        async with AsyncProducer(app) as producer:
            handle = await producer.enqueue("acl.add", (3, 4))
            assert await handle.result(5) == 7
            await producer.publish("feed", {"n": 5}, durable=True)

    errors: list[BaseException] = []

    def in_thread() -> None:  # its own event loop, whatever the caller runs
        try:
            asyncio.run(produce())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert not errors, errors


def exercise(url: str) -> None:
    ex = build(url)
    try:
        produce_and_work(ex)
    finally:
        ex.release.set()
        ex.app.close()
