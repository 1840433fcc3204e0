"""Through Sentinel: SIGKILL the master while jobs flow; producers (durable enqueue: WAIT for
the replica), the worker and a subscriber follow the failover, and every job acknowledged to
its producer is processed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisq import App, config
from redisq.channel import Subscriber
from redisq.connection import ConnectionOptions
from redisq.worker import Worker
from tests.support.sentinel import SentinelSet
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)
JOBS = 200  # the issue says 5,000; a failover in the middle must fit a 10 s test budget


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    s = SentinelSet(tmp_path).start()
    yield s
    s.stop()


def test_failover_loses_no_acknowledged_job(sentinels: SentinelSet) -> None:
    app = App(sentinels.url, options=FAST, wait_replicas=1, wait_timeout_s=0.5)
    ran: set[int] = set()

    @app.task(name="s.record")
    def record(n: int) -> None:
        ran.add(n)

    worker = Worker(app, config.load({"block_timeout_s": 0.5, "lease_s": 2}, {}))
    threading.Thread(target=worker.run, daemon=True).start()
    sub = Subscriber(app.connect("sub"), channels=["news"], ping_interval_s=0.3,
                     pong_timeout_s=0.5)
    sub.get(0.05)
    acknowledged: list[int] = []

    def produce() -> None:
        for n in range(JOBS):
            while True:
                try:
                    record.delay(n)
                    break
                except Exception:
                    time.sleep(0.05)
            acknowledged.append(n)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    old_port = sentinels.master_port()
    wait_until(lambda: len(acknowledged) > JOBS // 4, 5, what="jobs flowing")
    sentinels.master.kill()
    killed = time.monotonic()
    # Sentinel's own detection and election take 3-4 s here (longer after a failed election);
    # what this test proves is that redisq's clients follow a failover, so ask for it at once.
    sentinels.force_failover()
    wait_until(lambda: sentinels.master_port() != old_port, 6, what="the failover")
    promoted_s = time.monotonic() - killed
    count = len(ran)
    wait_until(lambda: len(ran) > count + 10, 6, what="consuming on the new master")
    print(f"failover: new master {promoted_s:.2f} s after the kill, consuming again "
          f"{time.monotonic() - killed:.2f} s after it")
    producer.join(8)
    try:
        wait_until(lambda: set(acknowledged) <= ran, 6, what="every acknowledged job")
        assert len(acknowledged) == JOBS

        def delivered() -> bool:
            try:
                app.publish("news", {"n": 1})
            except redis.ConnectionError:  # sentinels still settling on the new master
                return False
            return sub.get(0.2) is not None

        wait_until(delivered, 5, what="the subscriber on the new master")
    finally:
        worker.stop()
        sub.close()
