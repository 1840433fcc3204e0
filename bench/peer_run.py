"""One library's three measurements against a given Redis URL; prints one JSON line.

    python bench/peer_run.py PEER REDIS_URL DRAIN_N

Run by compare.py with the peers' own virtual environment (or the project's, for redisq).
Measures: one-by-one enqueue rate, drain rate of DRAIN_N no-op jobs (each INCRs a counter) by
ONE worker process started as the library is normally run, and enqueue → task start latency
on an idle worker (p50/p99 of 300 paced jobs).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
TASKS = HERE / "peer_tasks"
BIN = Path(sys.executable).parent

WORKERS = {
    "huey": [str(BIN / "huey_consumer"), "peer_huey.huey", "-w", "4", "-k", "thread", "-q"],
    "dramatiq": [str(BIN / "dramatiq"), "peer_dramatiq", "-p", "1", "-t", "8"],
    "rq": [str(BIN / "rq"), "worker", "-w", "rq.worker.SimpleWorker", "-q", "--url", "{url}",
           "default"],
    "celery": [str(BIN / "celery"), "-A", "peer_celery", "worker", "-P", "solo",
               "--loglevel", "WARNING"],
    "arq": [str(BIN / "arq"), "peer_arq.WorkerSettings"],
    "saq": [str(BIN / "saq"), "peer_saq.settings", "--quiet"],
    "redisq": [sys.executable, "-m", "redisq", "worker", "--app", "peer_redisq:app",
               "--concurrency", "8", "--log-level", "WARNING"],
}


class Producer:
    """Enqueue ``noop()`` / ``stamp(sent)`` the way each library's users do."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.mod: Any = importlib.import_module(f"peer_{peer}")
        self.loop = asyncio.new_event_loop()
        if peer == "arq":
            from arq import create_pool

            self.pool = self.loop.run_until_complete(create_pool(self.mod.WorkerSettings.redis_settings))

    def send(self, name: str, *args: Any) -> None:
        p, m = self.peer, self.mod
        if p in ("huey", "redisq"):
            getattr(m, name)(*args) if p == "huey" else getattr(m, name).delay(*args)
        elif p == "dramatiq":
            getattr(m, name).send(*args)
        elif p == "celery":
            getattr(m, name).delay(*args)
        elif p == "rq":
            m.queue.enqueue(getattr(m, name), *args)
        elif p == "arq":
            self.loop.run_until_complete(self.pool.enqueue_job(name, *args))
        elif p == "saq":
            self.loop.run_until_complete(m.queue.enqueue(name, sent=args[0]) if args
                                         else m.queue.enqueue(name))


def start_worker(peer: str, url: str) -> subprocess.Popen[bytes]:
    cmd = [c.replace("{url}", url) for c in WORKERS[peer]]
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(TASKS)}
    return subprocess.Popen(cmd, cwd=TASKS, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_counter(r: redis.Redis, n: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while int(r.get("counter") or 0) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"counter {r.get('counter')} < {n}")
        time.sleep(0.002)
    return time.perf_counter()


def main() -> None:
    peer, url, drain_n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["REDIS_URL"] = url
    sys.path.insert(0, str(TASKS))
    r = redis.Redis.from_url(url)
    r.flushdb()
    prod = Producer(peer)
    enq_n = min(drain_n, 2000)
    t = time.perf_counter()
    for _ in range(enq_n):
        prod.send("noop")
    enqueue_rate = enq_n / (time.perf_counter() - t)
    r.flushdb()
    for _ in range(drain_n):
        prod.send("noop")
    worker = start_worker(peer, url)
    try:
        wait_counter(r, 1, 30)
        t0 = time.perf_counter()
        drain_rate = (drain_n - 1) / (wait_counter(r, drain_n, 300) - t0)
        r.delete("lat")
        for _ in range(300):
            prod.send("stamp", time.time())
            time.sleep(0.005)
        deadline = time.monotonic() + 30
        while r.llen("lat") < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        lat = sorted(float(x) * 1000 for x in r.lrange("lat", 0, -1))
    finally:
        stop_worker(worker)
    print(json.dumps({"peer": peer, "enqueue_per_s": round(enqueue_rate),
                      "drain_per_s": round(drain_rate),
                      "latency_p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
                      "latency_p99_ms": round(lat[int(len(lat) * 0.99)], 3) if lat else None}))


if __name__ == "__main__":
    main()
