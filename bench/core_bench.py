"""Core benchmark: redisq's Queue, Consumer and Subscriber beside their redis-py floors.

    .venv/bin/python bench/core_bench.py             # ~1 minute
    .venv/bin/python bench/core_bench.py --profile   # also cProfile each redisq path

One process, redis-py + hiredis, 100-byte payloads (each one distinct, as real messages are),
a private redis-server on a free loopback port (AOF, appendfsync everysec). Every redisq figure
is printed beside its floor measured in the same run, floor and redisq runs alternating so that
machine noise hits both alike; rates are medians of 3 runs (5 for the single-command path).

Targets (from the issue):
  put                     >= 90 % of un-pipelined LPUSH from Python
  put_many                >= 90 % of pipelined LPUSH in batches of 1,000 commands
  reserve(n) + ack(batch) >= 8x a naive reliable consumer (BLMOVE then LREM, one at a time)
                          and >= 30,000 msg/s, on one consumer
  Subscriber latency      p50 and p99 within 20 % of a raw redis-py PubSub's (publish → receive)
  task.delay()            >= 90 % of un-pipelined LPUSH (the App job API; "pending" without it)
  task.map()              >= 100,000 jobs/s
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from redisq.backend.connection import connect
from redisq.broker.channel import Channel, Subscriber
from redisq.broker.queue import Queue

try:
    from redisq.broker.consumer import Consumer
except ImportError:  # before the consumer moved to its own module
    from redisq.broker.queue import Consumer  # type: ignore[attr-defined,no-redef]
from redisq.backend.embedded import RedisServer, free_port

SIZE = 100
RUNS = 3


def bodies(n: int, tag: str) -> list[bytes]:
    """``n`` distinct 100-byte messages."""
    return [f"{tag}:{i:010d}:".encode().ljust(SIZE, b".") for i in range(n)]


def rate(n: int, fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def alternate(contenders: dict[str, Callable[[], float]], runs: int = RUNS) -> dict[str, float]:
    """Run each contender ``runs`` times, interleaved (the order rotating each run, so none is
    always first after a pause); the median rate of each."""
    got: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            got[name].append(contenders[name]())
    return {k: statistics.median(v) for k, v in got.items()}


# -- producing -----------------------------------------------------------------------------
def bench_put(raw: redis.Redis, rq_client: redis.Redis) -> dict[str, float]:
    n = 5000
    msgs = bodies(n, "put")
    q = Queue(rq_client, "put")

    def floor() -> float:
        raw.delete("floor")
        lpush = raw.lpush
        return rate(n, lambda: [lpush("floor", m) for m in msgs])

    def floor_rq_client() -> float:  # the same LPUSH on redisq's connect() client (information)
        rq_client.delete("floor2")
        lpush = rq_client.lpush
        return rate(n, lambda: [lpush("floor2", m) for m in msgs])

    def ours() -> float:
        q.purge()
        put = q.put
        return rate(n, lambda: [put(m) for m in msgs])

    # Cheap and the noisiest (one round trip each): 5 runs rather than 3.
    return alternate({"floor": floor, "floor_rq_client": floor_rq_client, "ours": ours}, runs=5)


def bench_put_many(raw: redis.Redis, rq_client: redis.Redis) -> dict[str, float]:
    n = 100_000
    msgs = bodies(n, "many")
    q = Queue(rq_client, "many")

    def floor() -> float:  # the floor: 1,000 LPUSH commands per pipelined round trip
        raw.delete("floor")

        def run() -> None:
            for i in range(0, n, 1000):
                pipe = raw.pipeline(transaction=False)
                for m in msgs[i:i + 1000]:
                    pipe.lpush("floor", m)
                pipe.execute()
        return rate(n, run)

    def floor_variadic() -> float:  # information: 1,000 values per LPUSH, all pipelined
        raw.delete("floor")

        def run() -> None:
            pipe = raw.pipeline(transaction=False)
            for i in range(0, n, 1000):
                pipe.lpush("floor", *msgs[i:i + 1000])
            pipe.execute()
        return rate(n, run)

    def ours() -> float:
        q.purge()
        return rate(n, lambda: q.put_many(msgs))

    out = alternate({"floor": floor, "floor_variadic": floor_variadic, "ours": ours})
    raw.delete("floor")
    q.purge()
    return out


# -- consuming -----------------------------------------------------------------------------
def naive_drain(raw: redis.Redis, n: int = 5000) -> float:
    """A reliable consumer written by hand: BLMOVE into a processing list, then LREM it."""
    raw.delete("naive", "naive:proc")
    msgs = bodies(n, "naive")
    for i in range(0, n, 1000):
        raw.lpush("naive", *msgs[i:i + 1000])

    def run() -> None:
        done = 0
        while done < n:
            msg = raw.blmove("naive", "naive:proc", 1, "RIGHT", "LEFT")
            if msg is None:
                raise RuntimeError("naive consumer starved")
            raw.lrem("naive:proc", 1, msg)
            done += 1
    return rate(n, run)


def redisq_drain(url: str, batch: int, n: int = 50_000) -> float:
    """One Consumer: reserve(batch) then ack(the batch), until the queue is empty."""
    name = f"drain{batch}"
    Queue(connect(url, "bench"), name).put_many(bodies(n, name))
    c = Consumer(connect(url, "bench"), [name], lease_s=30, block_timeout_s=1)

    def run() -> None:
        done = 0
        while done < n:
            got = c.reserve(batch, timeout_s=1)
            if not got:
                raise RuntimeError("redisq consumer starved")
            c.ack(got)
            done += len(got)
    try:
        return rate(n, run)
    finally:
        c.close()


def bench_jobs(raw: redis.Redis, url: str) -> dict[str, float] | None:
    """The job API: ``delay()`` (job record + queue in one round trip) beside an un-pipelined
    LPUSH from raw redis-py, and ``task.map()`` bulk enqueue. None when the API is missing."""
    try:
        from redisq import App
    except ImportError:
        return None
    app = App(url)

    @app.task(name="bench.noop")
    def noop() -> None: ...

    noop.delay()  # registers the queue name once
    n, m = 3000, 50_000
    msgs = bodies(n, "jobs")

    def floor() -> float:
        raw.delete("floor")
        lpush = raw.lpush
        return rate(n, lambda: [lpush("floor", b) for b in msgs])

    def delay() -> float:
        return rate(n, lambda: [noop.delay() for _ in range(n)])

    def bulk() -> float:
        return rate(m, lambda: noop.map([()] * m))

    try:
        return alternate({"floor": floor, "delay": delay, "map": bulk})
    finally:
        raw.flushdb()
        app.close()


def bench_drain(raw: redis.Redis, url: str) -> dict[str, float]:
    return alternate({"floor": lambda: naive_drain(raw),
                      "ours100": lambda: redisq_drain(url, 100),
                      "ours500": lambda: redisq_drain(url, 500)})


# -- pub/sub latency -----------------------------------------------------------------------
def publisher(url: str, conn: Any) -> None:
    """Child process: on ("go", channel, durable, n, interval_s), publish ``n`` messages paced
    ``interval_s`` apart, each carrying its send time (CLOCK_MONOTONIC ns, system-wide)."""
    from redisq.backend.connection import connect

    client = connect(url, "bench-pub")
    client.ping()
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            return
        _, channel, durable, n, interval_s = cmd
        chan = Channel(client, channel, durable=durable)
        pad = b"." * SIZE
        nxt = time.perf_counter()
        for _ in range(n):
            nxt += interval_s
            chan.publish((str(time.monotonic_ns()).encode() + b":" + pad)[:SIZE])
            pause = nxt - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        conn.send("done")


def wait_subscribed(admin: redis.Redis, channel: str) -> None:
    deadline = time.monotonic() + 5
    while dict(admin.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no subscriber on {channel}")
        time.sleep(0.005)


def bench_pubsub(url: str, admin: redis.Redis, rounds: int = 5, per_round: int = 1000,
                 interval_s: float = 0.001) -> dict[str, list[float]]:
    """publish → receive latency (ms). A publisher process sends paced, timestamped messages;
    this process receives with each contender in turn, ``rounds`` interleaved rounds each."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=publisher, args=(url, there), daemon=True)
    proc.start()
    if not here.poll(30) or here.recv() != "ready":
        raise RuntimeError("publisher process did not start")

    ps = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    ps.subscribe("lat-raw")
    wait_subscribed(admin, "lat-raw")

    def raw_recv() -> bytes | None:
        # As a plain redis-py user writes it; None also comes back for an ignored
        # subscribe confirmation, so wait on until a message or the deadline.
        deadline = time.monotonic() + 1.0
        while True:
            m = ps.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if m is not None:
                return m["data"]
            if time.monotonic() >= deadline:
                return None

    sub = Subscriber(connect(url, "bench-sub"), channels=["lat-redisq"])
    sub.get(0.01)
    wait_subscribed(admin, "lat-redisq")
    dsub = Subscriber(connect(url, "bench-sub"), durable=["lat-durable"])
    dsub.get(0.01)
    wait_subscribed(admin, "lat-durable")

    def recv_with(s: Subscriber) -> Callable[[], bytes | None]:
        def recv() -> bytes | None:
            m = s.get(1.0)
            return m.data if m else None
        return recv

    contenders = {"raw redis-py PubSub": ("lat-raw", False, raw_recv),
                  "redisq Subscriber": ("lat-redisq", False, recv_with(sub)),
                  "redisq durable": ("lat-durable", True, recv_with(dsub))}
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    try:
        for _ in range(rounds):
            for name, (channel, durable, recv) in contenders.items():
                here.send(("go", channel, durable, per_round, interval_s))
                got = 0
                while got < per_round:
                    data = recv()
                    now = time.monotonic_ns()
                    if data is None:
                        raise RuntimeError(f"{name}: message lost or publisher stuck")
                    samples[name].append((now - int(data.split(b":", 1)[0])) / 1e6)
                    got += 1
                if here.recv() != "done":
                    raise RuntimeError("publisher failed")
    finally:
        here.send(("stop",))
        proc.join(5)
        ps.close()
        sub.close()
        dsub.close()
    return samples


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


# -- profiling -----------------------------------------------------------------------------
def profile(title: str, fn: Callable[[], Any], top: int = 14) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    print(f"\n--- cProfile: {title} (by own time) ---")
    print("\n".join(lines[2:]))


def run_profiles(url: str) -> None:
    client = connect(url, "bench")
    q = Queue(client, "prof")
    msgs = bodies(5000, "prof")
    profile("Queue.put x5000", lambda: [q.put(m) for m in msgs])
    q.purge()
    many = bodies(100_000, "profm")
    profile("Queue.put_many(100,000)", lambda: q.put_many(many))
    q.purge()
    profile("reserve(100)+ack drain of 50,000", lambda: redisq_drain(url, 100))


# -- report ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true", help="also cProfile the redisq paths")
    ap.add_argument("--skip-pubsub", action="store_true")
    opts = ap.parse_args()

    server = RedisServer(tempfile.mkdtemp(prefix="redisq-core-bench-"), port=free_port(),
                         appendfsync="everysec").start()
    verdicts: list[bool] = []
    try:
        url = server.url
        raw = redis.Redis.from_url(url)          # plain redis-py (hiredis parser): the floors
        rq_client = connect(url, "bench")        # what redisq users get from redisq.connect
        print(f"redis-server {raw.info('server')['redis_version']} on {url}; redis-py "
              f"{redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}; "
              f"{SIZE}-byte payloads; medians of alternating runs\n")

        put = bench_put(raw, rq_client)
        many = bench_put_many(raw, rq_client)
        drain = bench_drain(raw, url)
        jobs = bench_jobs(raw, url)

        hdr = f"{'redisq path':<28}{'floor':<34}{'floor/s':>10}{'redisq/s':>10}{'ratio':>7}  target"
        print(hdr)
        print("-" * (len(hdr) + 14))

        def row(name: str, fname: str, f: float, o: float, target: str, ok: bool | None) -> None:
            mark = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{name:<28}{fname:<34}{f:>10,.0f}{o:>10,.0f}{o / f:>7.2f}  {target:<18}{mark}")
            if ok is not None:
                verdicts.append(ok)

        row("Queue.put", "LPUSH, un-pipelined", put["floor"], put["ours"], ">= 0.90",
            put["ours"] >= 0.9 * put["floor"])
        row("  (info) LPUSH on connect()", "LPUSH, un-pipelined", put["floor"],
            put["floor_rq_client"], "", None)
        row("Queue.put_many", "pipelined LPUSH, 1,000/batch", many["floor"], many["ours"],
            ">= 0.90", many["ours"] >= 0.9 * many["floor"])
        row("  (info) same", "variadic LPUSH x1,000, pipelined", many["floor_variadic"],
            many["ours"], "", None)
        for b in (100, 500):
            o = drain[f"ours{b}"]
            row(f"reserve({b}) + ack(batch)", "BLMOVE + LREM, one at a time", drain["floor"], o,
                ">= 8.00, >= 30k/s", o >= 8 * drain["floor"] and o >= 30_000)

        if jobs is None:
            print(f"{'App jobs (delay, map)':<28}pending: redisq.App not importable")
        else:
            row("task.delay()", "LPUSH, un-pipelined", jobs["floor"], jobs["delay"], ">= 0.90",
                jobs["delay"] >= 0.9 * jobs["floor"])
            print(f"{'task.map()':<28}{'(absolute)':<34}{'':>10}{jobs['map']:>10,.0f}{'':>7}  "
                  f"{'>= 100k/s':<18}{'PASS' if jobs['map'] >= 100_000 else 'FAIL'}")
            verdicts.append(jobs["map"] >= 100_000)

        if not opts.skip_pubsub:
            lat = bench_pubsub(url, raw)
            n = len(next(iter(lat.values())))
            raw50, raw99 = pct(lat["raw redis-py PubSub"], 0.5), pct(lat["raw redis-py PubSub"], 0.99)
            print(f"\npub/sub publish → receive latency, ms ({n:,} messages each, 1 ms apart, "
                  "publisher in another process, 5 interleaved rounds)")
            print(f"{'receiver':<24}{'p50':>8}{'p90':>8}{'p99':>8}{'p50/raw':>9}{'p99/raw':>9}  target")
            for name, values in lat.items():
                p50, p90, p99 = pct(values, 0.5), pct(values, 0.9), pct(values, 0.99)
                mark, target = "", ""
                if name == "redisq Subscriber":
                    ok = p50 <= 1.2 * raw50 and p99 <= 1.2 * raw99
                    verdicts.append(ok)
                    target, mark = "<= 1.20 both", "PASS" if ok else "FAIL"
                elif name == "redisq durable":
                    target = "(information)"
                print(f"{name:<24}{p50:>8.3f}{p90:>8.3f}{p99:>8.3f}{p50 / raw50:>9.2f}"
                      f"{p99 / raw99:>9.2f}  {target:<14}{mark}")

        print(f"\n{sum(verdicts)}/{len(verdicts)} targets met")
        if opts.profile:
            run_profiles(url)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
