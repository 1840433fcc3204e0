"""Throughput as worker processes are added (1, 2, 4) on this machine.

    .venv/bin/python bench/scaling.py

Each run: a fresh Redis on loopback, 20,000 no-op jobs (each INCRs a counter) queued with
``task.map``, then N ``redisq worker`` processes drain them; prints jobs/s and the ratio to one
process. On a 2-core machine the workers, Redis and this script share two cores, so expect the
curve to flatten at 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redisq.server import RedisServer, free_port

HERE = Path(__file__).resolve().parent
JOBS = 20_000


def drain(processes: int) -> float:
    server = RedisServer(tempfile.mkdtemp(prefix="bench-scale-"), port=free_port()).start()
    env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(HERE / "peer_tasks")}
    try:
        sys.path.insert(0, str(HERE / "peer_tasks"))
        os.environ["REDIS_URL"] = server.url
        import peer_redisq  # the same no-op task as bench/compare.py

        peer_redisq.app._url = server.url
        peer_redisq.app.close()
        peer_redisq.noop.map([() for _ in range(JOBS)])
        r = server.client()
        workers = [subprocess.Popen([sys.executable, "-m", "redisq", "worker", "--app",
                                     "peer_redisq:app", "--log-level", "WARNING"],
                                    cwd=HERE / "peer_tasks", env=env) for _ in range(processes)]
        try:
            while int(r.get("counter") or 0) < 1:
                time.sleep(0.002)
            start, first = time.perf_counter(), int(r.get("counter") or 0)
            while int(r.get("counter") or 0) < JOBS:
                time.sleep(0.01)
            return (JOBS - first) / (time.perf_counter() - start)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(30)
    finally:
        server.stop()


def main() -> None:
    base = None
    print(f"{'processes':>9}{'jobs/s':>10}{'x one':>8}")
    for n in (1, 2, 4):
        rate = drain(n)
        base = base or rate
        print(f"{n:>9}{rate:>10.0f}{rate / base:>8.2f}")


if __name__ == "__main__":
    main()
