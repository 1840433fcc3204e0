"""A consumer blocked in reserve survives a blackholed connection, a frozen server, a killed
connection, a restart under load, Redis's own idle timeout, and a SIGKILL of a consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from redisq import keys
from redisq.connection import ConnectionOptions, connect
from redisq.consumer import Consumer
from redisq.queue import Queue
from redisq.server import RedisServer
from tests.support.loops import ConsumerLoop
from tests.support.proxy import FaultProxy
from tests.support.wait import wait_until

FAST = ConnectionOptions(block_timeout_s=0.5, read_margin_s=0.5, connect_timeout_s=0.5)
# A dead connection must surface within block + margin, plus a few capped backoffs.
RECOVERY_S = FAST.socket_timeout_s + 3.0


def make_consumer(url: str, cid: str = "c1", lease_s: float = 5.0) -> Consumer:
    client = connect(url, role="test-consumer", options=FAST)
    return Consumer(client, ["jobs"], consumer_id=cid, lease_s=lease_s, block_timeout_s=0.5)


def produce(server: RedisServer, bodies: list[bytes]) -> None:
    Queue(server.client(), "jobs").put_many(bodies)


@pytest.fixture
def loop_via_proxy(server: RedisServer):
    with FaultProxy(server.port) as proxy:  # type: ignore[arg-type]
        loop = ConsumerLoop(make_consumer(proxy.url))
        loop.start()
        yield proxy, loop
        loop.stop()


def test_blackholed_connection(server: RedisServer, loop_via_proxy) -> None:
    """Half-open: every byte dropped, no error from the kernel. The read deadline notices."""
    proxy, loop = loop_via_proxy
    produce(server, [b"before"])
    wait_until(lambda: loop.seen[b"before"], what="first message")
    proxy.mode = "blackhole"
    time.sleep(0.2)  # let the consumer block on the dead path
    produce(server, [f"m{i}".encode() for i in range(100)])
    time.sleep(FAST.socket_timeout_s)  # the outage lasts longer than one read deadline
    proxy.mode = "pass"
    wait_until(lambda: loop.count() == 101, RECOVERY_S, what="all messages after the blackhole")
    assert loop.consumer.outage.reconnects >= 1


def test_frozen_server(server: RedisServer, loop_via_proxy) -> None:
    """SIGSTOP for 3 s (the issue's 10 s does not fit a 10 s test budget; the mechanism is the
    same read deadline): consuming resumes within the deadline after SIGCONT."""
    _, loop = loop_via_proxy
    produce(server, [b"before"])
    wait_until(lambda: loop.count() == 1, what="first message")
    server.pause()
    time.sleep(3.0)
    server.resume()
    produce(server, [f"m{i}".encode() for i in range(50)])
    wait_until(lambda: loop.count() == 51, RECOVERY_S, what="messages after the freeze")


def test_client_kill(server: RedisServer) -> None:
    loop = ConsumerLoop(make_consumer(server.url))
    loop.start()
    try:
        produce(server, [b"before"])
        wait_until(lambda: loop.count() == 1, what="first message")
        admin = server.client()
        wait_until(lambda: admin.client_kill_filter(_type="normal", skipme=True), what="a kill")
        produce(server, [f"m{i}".encode() for i in range(50)])
        wait_until(lambda: loop.count() == 51, RECOVERY_S, what="messages after CLIENT KILL")
    finally:
        loop.stop()


def test_restart_under_load_loses_nothing(server: RedisServer) -> None:
    """5,000 messages flow while Redis restarts (AOF, appendfsync always): every message whose
    put returned is consumed; duplicates are allowed (at-least-once) and counted."""
    loop = ConsumerLoop(make_consumer(server.url), batch=100)
    loop.start()
    acknowledged: list[bytes] = []
    producer = Queue(connect(server.url, role="test-producer", options=FAST), "jobs")

    def produce_all() -> None:
        for i in range(5000):
            body = f"m{i}".encode()
            while True:
                try:
                    producer.put(body)
                    break
                except Exception:
                    time.sleep(0.02)
            acknowledged.append(body)

    t = threading.Thread(target=produce_all, daemon=True)
    t.start()
    wait_until(lambda: loop.count() >= 1000, 5, what="load flowing")
    server.restart()
    t.join(8)
    try:
        wait_until(lambda: set(acknowledged) <= set(loop.seen), 8, what="every message")
    finally:
        loop.stop()
    assert len(acknowledged) == 5000
    duplicates = sum(c - 1 for c in loop.seen.values())
    print(f"restart under load: 5000 acknowledged, 0 lost, {duplicates} duplicates")


def test_idle_beyond_server_timeout(server: RedisServer) -> None:
    """Redis closes idle clients after `timeout`; a consumer that idles past it still gets
    the next message (and nothing is lost if the close lands as a message is served)."""
    server.client().config_set("timeout", 1)
    loop = ConsumerLoop(make_consumer(server.url))
    loop.start()
    try:
        for round_ in range(2):
            time.sleep(2.2)  # idle longer than the server's timeout
            produce(server, [f"r{round_}-{i}".encode() for i in range(20)])
            wait_until(lambda r=round_: loop.count() == 20 * (r + 1), RECOVERY_S,
                       what="messages after idling")
    finally:
        loop.stop()


HOLDER = """
import sys, time
from redisq.connection import connect
from redisq.consumer import Consumer
c = Consumer(connect(sys.argv[1], "holder"), ["jobs"], consumer_id="holder", lease_s=1.0,
             block_timeout_s=0.5)
got = c.reserve(5)
print(len(got), flush=True)
time.sleep(60)
"""


def test_sigkilled_consumer_messages_redelivered_once(server: RedisServer, tmp_path: Path) -> None:
    produce(server, [f"m{i}".encode() for i in range(8)])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, server.url], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "5"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    survivor = make_consumer(server.url, cid="survivor", lease_s=1.0)
    loop = ConsumerLoop(survivor)
    loop.start()
    try:
        wait_until(lambda: loop.count() == 8, 5, what="held messages after the lease")
        time.sleep(1.2)  # another lease period: nothing comes twice
        assert all(count == 1 for count in loop.seen.values()), loop.seen
        assert server.client().llen(keys.processing("jobs", "holder")) == 0
    finally:
        loop.stop()
