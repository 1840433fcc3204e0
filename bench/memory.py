"""Memory per job in Redis: redisq beside its peers (RQ, Dramatiq, Huey, ...).

    .venv/bin/python bench/memory.py [--n 50000] [--only huey,rq] [--no-finished] [--no-peers]

For each library, on its own fresh redis-server (free loopback port, AOF everysec, never the
machine's Redis): FLUSHALL, one warm-up job (so one-time keys such as queue indexes are not
counted per job), then ``used_memory`` from ``INFO memory`` around N no-op jobs enqueued one by
one the library's usual way:

queued B/job    (used_memory after the N enqueues - before) / N: what a waiting job costs.
finished B/job  then one worker drains them (as in bench/peers.py), is stopped (its connections
                closed), and (used_memory - before) / N: what a finished job keeps for its
                result TTL (no-op jobs: the result is ``null``, so this is the record alone).

redisq is measured here (project venv) for ``delay()`` and ``map()`` (bulk); the peers in a
child process in ``bench/.venv-peers`` (``bash bench/setup_peers.sh`` installs them; without
it, redisq alone is printed). Peers that keep nothing after a job (Dramatiq without a result
backend, Huey for a task returning None) show ~0 finished.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
DEFAULT_PEERS = ("rq", "dramatiq", "huey")
sys.path.insert(0, str(HERE))

import peers  # noqa: E402  (bench/peers.py: the adapters and the worker harness)


def used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def settle_memory(r: redis.Redis, timeout_s: float = 10.0) -> int:
    """used_memory once it stops moving (a stopped worker's connections are being closed)."""
    last, deadline = used(r), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = used(r)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def measure(adapter: peers.Adapter, url: str, n: int, finished: bool,
            bulk: bool = False) -> dict[str, Any]:
    """Bytes per queued job (and per finished job) for one library on the server at ``url``."""
    r = redis.Redis.from_url(url)
    r.flushall()
    adapter.setup(url)
    try:
        adapter.enqueue_noop()  # warm-up: one-time keys
        before = settle_memory(r)
        if bulk:
            adapter.enqueue_bulk(n)  # type: ignore[attr-defined]
        else:
            for _ in range(n):
                adapter.enqueue_noop()
        out: dict[str, Any] = {"library": adapter.name + (" (map)" if bulk else ""), "jobs": n,
                               "queued_b": round((settle_memory(r) - before) / n, 1)}
        if finished:
            proc = peers.start_worker(adapter, url)
            try:
                peers.wait_counter(r, n + 1, max(300.0, n / 50), proc)
                time.sleep(1.0)  # the last acks/records after the task's INCR
            finally:
                peers.stop_worker(proc)
            out["finished_b"] = round((settle_memory(r) - before) / n, 1)
        return out
    finally:
        adapter.close()
        r.close()


def fresh_server() -> Any:
    from redisq.backend.embedded import RedisServer, free_port

    return RedisServer(tempfile.mkdtemp(prefix="redisq-bench-mem-"), port=free_port(),
                       appendfsync="everysec").start()


def redisq_rows(n: int, finished: bool) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from bench.compare import Redisq

    rows = []
    for bulk in (False, True):
        sys.modules.pop("bench.redisq_tasks", None)  # its App binds $REDIS_URL at import
        vars(sys.modules["bench"]).pop("redisq_tasks", None)
        server = fresh_server()
        try:
            peers.RESULTS.mkdir(exist_ok=True)
            rows.append(measure(Redisq(), server.url, n, finished, bulk))
        finally:
            server.stop()
    return rows


def peer_row(name: str, n: int, finished: bool) -> dict[str, Any]:
    server = fresh_server()
    try:
        cmd = [str(PEERS_PY), __file__, "--child", name, "--url", server.url, "--n", str(n)]
        if not finished:
            cmd.append("--no-finished")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            return {"library": name, "error": done.stderr.strip().splitlines()[-1:]}
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        server.stop()


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'library':<16}{'jobs':>8}{'queued B/job':>14}{'finished B/job':>16}")
    for row in rows:
        if "error" in row:
            print(f"{row['library']:<16} error: {row['error']}")
            continue
        fin = row.get("finished_b")
        print(f"{row['library']:<16}{row['jobs']:>8}{row['queued_b']:>14.1f}"
              f"{'' if fin is None else f'{fin:.1f}':>16}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Memory per queued and finished job (docstring).")
    ap.add_argument("--n", type=int, default=50_000, help="jobs per measurement")
    ap.add_argument("--only", help=f"comma-separated peers (default: {','.join(DEFAULT_PEERS)})")
    ap.add_argument("--no-finished", action="store_true", help="queued jobs only (faster)")
    ap.add_argument("--no-peers", action="store_true", help="redisq alone")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    finished = not opts.no_finished
    if opts.child:  # in bench/.venv-peers
        sys.path.insert(0, str(peers.TASKS))
        import os

        os.environ["REDIS_URL"] = opts.url
        peers.RESULTS.mkdir(exist_ok=True)
        print(json.dumps(measure(peers.PEERS[opts.child](), opts.url, opts.n, finished)))
        return
    rows = redisq_rows(opts.n, finished)
    names = opts.only.split(",") if opts.only else list(DEFAULT_PEERS)
    if PEERS_PY.exists() and not opts.no_peers:
        rows += [peer_row(name, opts.n, finished) for name in names]
    print_table(rows)
    if not PEERS_PY.exists() and not opts.no_peers:
        print("\npeers not installed: `bash bench/setup_peers.sh` creates bench/.venv-peers "
              "(RQ, Dramatiq, Huey, ...), then run this again.")


if __name__ == "__main__":
    main()
