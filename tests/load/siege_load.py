"""Load test (a script, not a pytest test: it takes about two minutes).

Serves the web app with gunicorn (2 sync workers) and runs one redisq worker against a private
Redis on loopback, then runs siege against a bare route, POST /prodcons and POST /pubsub
(``-b -c 10 -r 500``, then ``-c 50 -t 20S``), and checks: availability 100 %, 0 failed
transactions, and every accepted job processed exactly once (each job INCRs a counter; the
counter must equal the number of jobs the app accepted). Prints transactions/s and the ratio
of POST /prodcons to the bare route. Exit 1 if a check fails.

    .venv/bin/python tests/load/siege_load.py [--quick] [--worker-during]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from redisq.server import RedisServer, free_port  # noqa: E402

COUNTER = "load:count"


def siege(url_line: str, *args: str) -> dict[str, float]:
    cmd = ["siege", "-j", "-q", *args, url_line]
    if " POST " in url_line:
        cmd[1:1] = ["-T", "application/json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout[out.stdout.index("{"):])


def wait_http(url: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    quick = "--quick" in sys.argv
    # By default the worker starts after the HTTP runs, so the figures measure the web tier
    # alone (as the seed's baseline did); --worker-during drains while siege runs.
    during = "--worker-during" in sys.argv
    runs = [("-b", "-c", "10", "-r", "50" if quick else "500"),
            ("-b", "-c", "50", "-t", "5S" if quick else "20S")]
    data = tempfile.mkdtemp(prefix="redisq-load-")
    server = RedisServer(data, port=free_port()).start()
    port = free_port()
    env = {**os.environ, "REDIS_URL": server.url, "REDISQ_APP": "webapp.tasks:app",
           "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("REDISQ_") or k == "REDISQ_APP"}
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                            "--log-level", "warning", "webapp:create_app()"], env=env, cwd=ROOT)
    worker_cmd = [sys.executable, "-m", "redisq", "worker", "--app", "webapp.tasks:app",
                  "--concurrency", "16", "--log-level", "WARNING"]
    worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT) if during else None
    base = f"http://127.0.0.1:{port}"
    targets = {"bare GET /hello": f"{base}/hello",
               "POST /prodcons": f'{base}/prodcons POST {{"task":"demo.count","args":["{COUNTER}"]}}',
               "POST /pubsub": f'{base}/pubsub POST {{"channel":"load","message":{{"n":1}}}}'}
    ok = True
    try:
        wait_http(base + "/hello")
        results: dict[tuple[str, str], dict[str, float]] = {}
        for run in runs:
            for name, line in targets.items():
                results[(" ".join(run), name)] = r = siege(line, *run)
                print(f"{' '.join(run):<22} {name:<16} {r['transaction_rate']:>9.1f} trans/s  "
                      f"availability {r['availability']:.2f} %  failed {r['failed_transactions']}",
                      flush=True)
                ok &= r["availability"] == 100.0 and r["failed_transactions"] == 0
        for run in runs:
            bare = results[(" ".join(run), "bare GET /hello")]["transaction_rate"]
            pro = results[(" ".join(run), "POST /prodcons")]["transaction_rate"]
            print(f"{' '.join(run):<22} POST /prodcons / bare route = {pro / bare:.2f}")
        if worker is None:
            worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT)
        ok &= check_exactly_once(server, results)
    finally:
        for proc in (web, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        server.stop()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def check_exactly_once(server: RedisServer, results: dict) -> bool:
    client = server.client()
    accepted = int(client.hget("redisq:{default}:stats", "enqueued") or 0)
    posted = sum(int(r["successful_transactions"]) for (_, name), r in results.items()
                 if name == "POST /prodcons")
    deadline = time.monotonic() + 60
    while int(client.get(COUNTER) or 0) < accepted and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a duplicate, if any, would land now
    done = int(client.get(COUNTER) or 0)
    stats = client.hgetall("redisq:{default}:stats")
    print(f"accepted jobs {accepted} (siege 2xx: {posted}), processed {done}, "
          f"succeeded {int(stats.get(b'succeeded', 0))}, dead {int(stats.get(b'dead', 0))}")
    # siege does not count requests cut off by -t, which the app may still have accepted.
    return accepted == done and posted <= accepted


if __name__ == "__main__":
    sys.exit(main())
