"""Core benchmark: redisq's queue and channel beside the raw redis-py floors, in one run.

    .venv/bin/python bench/core_bench.py

Each line prints the floor and redisq measured in the same run against a private Redis on
loopback (100-byte payloads, one process, redis-py + hiredis), the ratio, and the issue's target.
Medians of 3 short runs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import redis

from redisq.channel import Channel, Subscriber
from redisq.connection import connect
from redisq.consumer import Consumer
from redisq.queue import Queue
from redisq.server import RedisServer, free_port

PAYLOAD = b"x" * 100


def median_rate(fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(3))


def timed(n: int, body: Callable[[], None]) -> float:
    t = time.perf_counter()
    body()
    return n / (time.perf_counter() - t)


def bench_put(r: redis.Redis, q: Queue) -> tuple[float, float]:
    n = 3000
    floor = median_rate(lambda: timed(n, lambda: [r.lpush("floor", PAYLOAD) for _ in range(n)]))
    ours = median_rate(lambda: timed(n, lambda: [q.put(PAYLOAD) for _ in range(n)]))
    return floor, ours


def bench_put_many(r: redis.Redis, q: Queue) -> tuple[float, float]:
    n = 100_000

    def floor_run() -> None:
        for _ in range(0, n, 1000):
            pipe = r.pipeline(transaction=False)
            for _ in range(1000):
                pipe.lpush("floor", PAYLOAD)
            pipe.execute()

    floor = median_rate(lambda: timed(n, floor_run))
    ours = median_rate(lambda: timed(n, lambda: q.put_many(PAYLOAD for _ in range(n))))
    return floor, ours


def bench_drain(r: redis.Redis, url: str, batch: int) -> tuple[float, float]:
    n = 20_000

    def naive() -> float:
        r.delete("naive", "naive:proc")
        r.lpush("naive", *([PAYLOAD] * 5000))

        def run() -> None:
            while (msg := r.blmove("naive", "naive:proc", 1, "RIGHT", "LEFT")) is not None:
                r.lrem("naive:proc", 1, msg)
        return timed(5000, run)

    def ours() -> float:
        q = Queue(r, "drain")
        q.put_many(PAYLOAD for _ in range(n))
        c = Consumer(connect(url, "bench"), ["drain"], lease_s=30, block_timeout_s=1)

        def run() -> None:
            done = 0
            while done < n:
                got = c.reserve(batch, timeout_s=1)
                c.ack(got)
                done += len(got)
        rate = timed(n, run)
        c.close()
        return rate

    return median_rate(naive), median_rate(ours)


def bench_pubsub(url: str, r: redis.Redis) -> dict[str, tuple[float, float]]:
    """publish → receive latency (ms), paced one at a time, p50/p99. The three subscribers are
    measured in alternating rounds so that machine noise hits them alike."""
    ps = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    ps.subscribe("raw")
    ps.get_message(timeout=1)

    def raw_recv() -> bytes | None:
        m = ps.get_message(timeout=1)
        return m["data"] if m else None

    contenders: dict[str, tuple[Callable[[], bytes | None], Callable[[bytes], object]]] = {
        "raw redis-py": (raw_recv, lambda d: r.publish("raw", d))}
    subs = []
    for durable in (False, True):
        name = "bench-durable" if durable else "bench"
        sub = Subscriber(connect(url, "bench-sub"), channels=[] if durable else [name],
                         durable=[name] if durable else [])
        sub.get(0.05)
        subs.append(sub)
        chan = Channel(r, name, durable=durable)

        def recv(s: Subscriber = sub) -> bytes | None:
            m = s.get(1.0)
            return m.data if m else None

        contenders["redisq durable" if durable else "redisq"] = (recv, chan.publish)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(8):
        for name, (receive, publish) in contenders.items():
            for i in range(250):
                t = time.perf_counter()
                publish(f"{i}".encode())
                while receive() is None:
                    pass
                samples[name].append((time.perf_counter() - t) * 1000)
    for sub in subs:
        sub.close()
    out = {}
    for name, lat in samples.items():
        lat.sort()
        out[name] = (lat[len(lat) // 2], lat[int(len(lat) * 0.99)])
    return out


def main() -> None:
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-bench-"), port=free_port()).start()
    try:
        r = connect(server.url, "bench")
        q = Queue(r, "bench")
        rows = []
        floor, ours = bench_put(r, q)
        rows.append(("put (1 round trip)", "LPUSH", floor, ours, 0.9))
        floor, ours = bench_put_many(r, q)
        rows.append(("put_many", "pipelined LPUSH x1000", floor, ours, 0.9))
        for batch in (100, 500):
            naive, ours = bench_drain(r, server.url, batch)
            rows.append((f"reserve({batch})+ack drain", "BLMOVE+LREM", naive, ours, 8.0))
        print(f"{'redisq':<26}{'floor':<24}{'floor/s':>10}{'redisq/s':>10}{'ratio':>7}"
              f"{'target':>8}  ok")
        for name, fname, f, o, target in rows:
            ratio = o / f
            print(f"{name:<26}{fname:<24}{f:>10.0f}{o:>10.0f}{ratio:>7.2f}{target:>8.2f}  "
                  f"{'PASS' if ratio >= target else 'FAIL'}")
        lat = bench_pubsub(server.url, r)
        raw50, raw99 = lat["raw redis-py"]
        print("\npub/sub publish → receive latency (ms), 2,000 paced messages")
        for name, (p50, p99) in lat.items():
            print(f"  {name:<16} p50 {p50:.3f}  p99 {p99:.3f}  (p50 {p50 / raw50:.2f}x raw,"
                  f" p99 {p99 / raw99:.2f}x raw)")
        ok = lat["redisq"][0] <= raw50 * 1.2 and lat["redisq"][1] <= raw99 * 1.2
        print(f"  target: redisq within 20 % of raw (p50 and p99): {'PASS' if ok else 'FAIL'}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
