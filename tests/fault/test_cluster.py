"""Redis Cluster (three masters started by the test, ``redis+cluster://``): six queues spread
over the nodes, ``redisq worker`` processes consuming queues that live on different nodes,
pub/sub across nodes, and a node restart in the middle of the flow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from redisq import App
from redisq.backend import keys
from redisq.backend.connection import ConnectionOptions
from redisq.backend.registry import Registry
from redisq.broker.channel import Subscriber
from tests.support.cluster import ClusterSet
from tests.support.procs import start_worker, stop
from tests.support.runs_app import read_runs
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)
QUEUES = [f"q{i}" for i in range(6)]
PER_QUEUE = 150
RESTART_PER_QUEUE = 60  # fewer: the restart itself takes 2 s (a restarted master waits 2 s
#                         for the cluster's view before it accepts writes)

pytestmark = pytest.mark.slow


def producer(url: str) -> App:
    app = App(url, options=FAST)
    app.task(name="r.record")(lambda n, sleep_s=0.0: n)  # runs in the workers
    return app


def workers(url: str, runs_file: Path, count: int) -> list:
    return [start_worker(url, "--app", "tests.support.runs_app:app", "--queues",
                         ",".join(QUEUES), "--lease-s", "2", "--concurrency", "4",
                         RUNS_FILE=str(runs_file)) for _ in range(count)]


def enqueued(app: App, q: str, n: int, job_id: str) -> bool:
    """One try to queue ``n`` on ``q`` (a stable id: a retry never queues it twice)."""
    try:
        app.enqueue("r.record", (n,), queue=q, job_id=job_id)
        return True
    except redis.RedisError:
        return False


def number(q: str, i: int) -> int:
    return QUEUES.index(q) * 10_000 + i


def test_queues_spread_over_nodes_and_two_workers_drain_them(cluster: ClusterSet,
                                                               tmp_path: Path) -> None:
    nodes = {q: cluster.node_of(keys.pending(q)).port for q in QUEUES}
    assert len(set(nodes.values())) == 3, f"six queues on three nodes: {nodes}"
    app = producer(cluster.url)
    runs_file = tmp_path / "runs.log"
    procs = workers(cluster.url, runs_file, 2)
    # Both registered (the registry spans nodes too) before the jobs, so both get some.
    wait_until(lambda: len(Registry(app.client).workers()) == 2, 6, what="two workers")
    firsts = {}
    for q in QUEUES:  # one by one, and in bulk (one script call per chunk, on the queue's node)
        for i in range(PER_QUEUE // 3):
            job = app.enqueue("r.record", (number(q, i),), queue=q)
            firsts.setdefault(q, job)
        app.enqueue_many("r.record", [((number(q, i),), {}) for i in range(PER_QUEUE // 3,
                                                                          PER_QUEUE)], queue=q)
    sub = Subscriber(app.connect("sub"), channels=["news"], durable=["log"],
                     ping_interval_s=0.3, pong_timeout_s=0.5)
    try:
        sub.get(0.1)  # subscribed: SSUBSCRIBE on the node of each channel's slot
        wait_until(lambda: len(read_runs(runs_file).count) == len(QUEUES) * PER_QUEUE, 8,
                   what="every job to run")
        runs = read_runs(runs_file)
        assert set(runs.count.values()) == {1}, "each job ran once"
        assert len(set().union(*runs.pids.values())) == 2, "both workers took jobs"
        for q in QUEUES:
            wait_until(lambda q=q: app.queue(q).counts().get("succeeded") == PER_QUEUE, 3,
                       what=f"queue {q}'s records")
            # Finished records (in done buckets, read by one script on the queue's node), found
            # by id alone too (one look-up per queue, routed to each queue's node).
            assert firsts[q].info()["status"] == "succeeded"
            assert app.job(firsts[q].id).queue == q  # type: ignore[union-attr]
        app.publish("news", {"n": 1})
        app.publish("log", {"n": 2}, durable=True)
        got = {m.channel for m in (sub.get(2), sub.get(2)) if m is not None}
        assert got == {"news", "log"}
    finally:
        sub.close()
        for p in procs:
            stop(p)
        app.close()


def test_a_node_restart_is_survived(cluster: ClusterSet, tmp_path: Path) -> None:
    """Restart the node of q0 (and whichever other queues share it) while a producer and a
    worker run: the producer's retries and the worker get through, nothing acknowledged is
    lost, and the worker consumes every queue again."""
    app = producer(cluster.url)
    runs_file = tmp_path / "runs.log"
    (proc,) = workers(cluster.url, runs_file, 1)
    acked: set[int] = set()
    done = threading.Event()

    def produce() -> None:
        for i in range(RESTART_PER_QUEUE):
            for q in QUEUES:
                while not done.is_set():
                    try:  # a stable id: a retry of a job that did get queued is not queued twice
                        app.enqueue("r.record", (number(q, i),), queue=q, job_id=f"{q}-{i}")
                        break
                    except redis.RedisError:
                        time.sleep(0.05)
                acked.add(number(q, i))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    node = cluster.node_of(keys.pending("q0"))
    try:
        wait_until(lambda: len(read_runs(runs_file).count) > 60, 6, what="jobs flowing")
        node.restart()  # SIGTERM (the AOF is flushed), then the same data dir and port
        restarted = time.monotonic()
        thread.join(8)
        wait_until(lambda: acked <= read_runs(runs_file).count.keys(), 6,
                   what="every acknowledged job to run")
        assert len(acked) == len(QUEUES) * RESTART_PER_QUEUE
        assert proc.poll() is None, "the worker exited"
        print(f"\nnode restart: all {len(acked)} jobs ran "
              f"{time.monotonic() - restarted:.2f} s after the node came back")
    finally:
        done.set()
        stop(proc)
        app.close()


def test_a_node_down_does_not_stop_the_other_nodes_queues(cluster: ClusterSet,
                                                          tmp_path: Path) -> None:
    """One worker on six queues over three nodes; the node of q0 is SIGKILLed. The queues of
    that node rest, each with its own backoff, while the other nodes' queues keep flowing (they
    stopped altogether before); once the node is back its queues flow again. (A node frozen
    with SIGSTOP still stalls the worker for socket deadlines: see docs/scaling.md.)"""
    app = producer(cluster.url)
    runs_file = tmp_path / "runs.log"
    (proc,) = workers(cluster.url, runs_file, 1)
    node = cluster.node_of(keys.pending("q0"))
    down = [q for q in QUEUES if cluster.node_of(keys.pending(q)).port == node.port]
    up = [q for q in QUEUES if q not in down]
    try:
        for q in QUEUES:  # a job per queue before the fault: the worker is up and consuming
            app.enqueue("r.record", (number(q, 0),), queue=q)
        wait_until(lambda: len(read_runs(runs_file).count) == len(QUEUES), 6,
                   what="the first jobs")
        node.kill()
        killed = time.monotonic()
        for i in range(1, 21):
            for q in up:
                app.enqueue("r.record", (number(q, i),), queue=q)
        during = {number(q, i) for q in up for i in range(1, 21)}
        wait_until(lambda: during <= read_runs(runs_file).count.keys(), 4,
                   what="the other nodes' jobs during the outage")
        flowing_s = time.monotonic() - killed
        assert proc.poll() is None, "the worker exited"
        node.restart()
        cluster.wait_ok()
        for q in down:  # a restarted master refuses writes until it has the cluster's view
            wait_until(lambda q=q: enqueued(app, q, number(q, 1), f"{q}-after"), 6,
                       what=f"the producer on {q} again")
        wait_until(lambda: {number(q, 1) for q in down} <= read_runs(runs_file).count.keys(), 6,
                   what="the node's queues once it is back")
        count = read_runs(runs_file).count
        # The killed node may have lost its last second of writes (AOF everysec), an ack
        # among them: its jobs are at least once. The other nodes' ran exactly once.
        assert {count[n] for n in during} == {1}
        print(f"\nnode SIGKILLed: the other nodes' {len(during)} jobs all ran "
              f"{flowing_s:.2f} s after the kill")
    finally:
        stop(proc)
        app.close()
