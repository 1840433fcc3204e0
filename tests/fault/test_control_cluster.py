"""Job control on a Redis Cluster (ctl): every limits step touches one slot (the queue's tag),
the paused set and the heartbeat's pipelines span nodes. A worker in the test process consumes
queues on different nodes."""

from __future__ import annotations

import time

import pytest

from redisq import App, current_job
from redisq.backend import keys
from tests.support.cluster import ClusterSet
from tests.support.inproc import running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def test_limits_and_pause_on_a_cluster(cluster: ClusterSet) -> None:
    queues = ["ca", "cb", "cc", "cd"]
    assert len({cluster.node_of(keys.pending(q)).port for q in queues}) > 1
    app = App(cluster.url)

    @app.task(name="k.pair", concurrency_limit=2, rate_limit="200/s")
    def pair(i: int) -> None:
        q = current_job().queue  # limits count per task and queue (one Cluster slot)
        now = app.client.incr(f"{{k}}:running:{q}")
        app.client.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) "
                        "then redis.call('SET', KEYS[1], ARGV[1]) end", 1, f"{{k}}:max:{q}", now)
        time.sleep(0.02)
        app.client.decr(f"{{k}}:running:{q}")

    jobs = [pair.enqueue(args=(i,), queue=queues[i % 4]) for i in range(40)]
    app.pause("cd")
    with running(app, queues=",".join(queues), concurrency=6, lease_s=0.9) as worker:
        wait_until(lambda: all(j.status == "succeeded" for j in jobs
                               if j.queue != "cd"), 8, what="the unpaused queues' jobs")
        assert worker.paused == {"cd"}
        assert all(j.status == "queued" for j in jobs if j.queue == "cd")
        app.resume("cd")
        wait_until(lambda: all(j.status == "succeeded" for j in jobs), 5, what="cd resumed")
    assert all(1 <= int(app.client.get(f"{{k}}:max:{q}") or 0) <= 2 for q in queues)
    app.close()
