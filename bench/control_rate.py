"""The issue-15 rate-limit figure: ``rate_limit="50/s"`` over 4 worker processes for 10 s.

    .venv/bin/python bench/control_rate.py [--window-s 10] [--workers 4] [--threads 4]

On a fresh redis-server (free loopback port; never the machine's Redis): queues enough jobs of
``c.rated`` (tests/control_app.py: ``rate_limit="50/s"``, each start RPUSHes its own wall
time), starts the workers through the real CLI, skips the first second (workers starting),
then counts the starts the tasks recorded in the next ``--window-s`` seconds. The issue asks
for 475 to 525 in 10 s (500 ± 5 %). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redisq.backend import keys  # noqa: E402
from redisq.backend.embedded import RedisServer, free_port  # noqa: E402
from tests.support.procs import cli_env  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-s", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=4)
    opts = ap.parse_args()
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-bench-rate-"), port=free_port(),
                         appendfsync="everysec").start()
    url = server.url
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from tests import control_app

        control_app.app.use_url(url)
        control_app.rated.map(range(int(50 * (opts.window_s + 4))))
        for _ in range(opts.workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "redisq", "worker", "--app", "tests.control_app:app",
                 "--concurrency", str(opts.threads), "--log-level", "WARNING"],
                cwd=ROOT, env=cli_env(url), stdout=subprocess.DEVNULL))
        r = redis.Redis.from_url(url)
        while not r.llen("rated:starts"):
            time.sleep(0.01)
        first = float(r.lindex("rated:starts", 0) or 0)
        lo, hi = first + 1.0, first + 1.0 + opts.window_s
        while time.time() < hi + 0.5:
            time.sleep(0.1)
        starts = [float(x) for x in r.lrange("rated:starts", 0, -1)]
        n = sum(lo <= t < hi for t in starts)
        expected = 50 * opts.window_s
        print(json.dumps({"rate_limit": "50/s", "workers": opts.workers, "threads": opts.threads,
                          "window_s": opts.window_s, "started": n, "expected": expected,
                          "error_pct": round(100 * (n - expected) / expected, 2),
                          "throttled": int(r.hget(keys.stats("default"), "throttled") or 0)}))
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
        server.stop()


if __name__ == "__main__":
    main()
