"""The ACL user of docs/security.md is enough for everything redisq does."""

from __future__ import annotations

import re
from pathlib import Path

from redisq import App, config
from redisq.channel import Subscriber
from redisq.registry import Registry
from redisq.server import RedisServer
from redisq.worker import Worker

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def acl_args() -> list[str]:
    block = re.search(r"```text\n(ACL SETUSER.*?)```", DOC.read_text(), re.S)
    assert block, "security.md lost its ACL block"
    return block.group(1).split()[2:]  # after "ACL SETUSER"


def test_documented_acl_suffices(server: RedisServer) -> None:
    server.client().execute_command("ACL", "SETUSER", *acl_args())
    url = f"redis://redisq:change-me@127.0.0.1:{server.port}/0"
    app = App(url)

    @app.task(name="acl.add", retries=1, retry_backoff_s=0.01)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="acl.fail", retries=0)
    def fail() -> None:
        raise ValueError("no")

    sub = Subscriber(app.connect("acl-sub"), channels=["news"], durable=["feed"])
    sub.get(0.05)
    job, bad = add.delay(1, 2), fail.enqueue(delay_s=0)
    add.map([(1, 1), (2, 2)])
    with app.lock("acl", ttl_s=2):
        pass
    worker = Worker(app, config.load({"burst": True, "block_timeout_s": 0.2, "lease_s": 1}, {}))
    assert worker.run() == 0
    assert job.result(2) == 3 and bad.status == "dead"
    assert app.requeue_dead("default") == 1
    app.publish("news", {"n": 1})
    app.publish("feed", {"n": 2}, durable=True)
    got = {m.channel for m in (sub.get(1), sub.get(1)) if m}
    assert got == {"news", "feed"}
    assert Registry(app.client).workers() == []
    sub.close()
