"""redisq against Huey, Dramatiq, SAQ, arq, Celery and RQ: one table, with ratios.

    bash bench/setup_peers.sh                 # once: the peers' own virtual environment
    .venv/bin/python bench/compare.py         # ~6 minutes (peers ~5, redisq ~1)
    .venv/bin/python bench/compare.py --peers-json bench/results/peers.json   # reuse peers

Runs ``bench/peers.py`` with ``bench/.venv-peers/bin/python`` as a subprocess (the peers are
never installed in the project's venv), then measures redisq itself in this (project) venv with
the very same harness (``peers.measure``): each library on its own fresh redis-server on a free
loopback port; N no-op jobs enqueued one by one (enqueue/s), drained by ONE worker process
(drain/s), then enqueue → start latency on the idle worker (p50/p99). redisq's worker is

    python -m redisq worker --app bench.redisq_tasks:app --mode prodcons --queues default \\
        --concurrency 8 --url URL --log-level WARNING      # --concurrency N to change

(WARNING like the peers, which all run with their quiet flags). Also measured for redisq, beside
its floor in the same run: ``delay()`` vs un-pipelined LPUSH, and ``task.map`` bulk enqueue.

Targets (from the issue): drain >= 5x the fastest peer; delay() >= 90 % of un-pipelined LPUSH;
task.map >= 100,000 jobs/s; enqueue → start p50 no worse than the best peer's, p99 <= 2 ms.
Results: bench/results/compare.json (and peers.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (the shared harness; imports no peer library)

from redisq.backend.embedded import RedisServer, free_port  # noqa: E402


class Redisq(peers.Adapter):
    name, drain_n, cwd = "redisq", 10_000, ROOT
    concurrency = 8  # --concurrency

    @property
    def worker_label(self) -> str:  # type: ignore[override]
        return f"redisq worker --concurrency {self.concurrency}"

    def setup(self, url: str) -> None:
        import os

        os.environ["REDIS_URL"] = url
        sys.path.insert(0, str(ROOT))
        from bench import redisq_tasks  # the planned API: App, @app.task, .delay, .map

        self.m = redisq_tasks

    def enqueue_noop(self) -> None:
        self.m.noop.delay()

    def enqueue_stamp(self, sent: float) -> None:
        self.m.stamp.delay(sent)

    def enqueue_bulk(self, n: int) -> None:
        self.m.noop.map([((), {})] * n)

    def worker_cmd(self, url: str) -> list[str]:
        return [sys.executable, "-m", "redisq", "worker", "--app", "bench.redisq_tasks:app",
                "--mode", "prodcons", "--queues", "default", "--concurrency", str(self.concurrency),
                "--url", url, "--log-level", "WARNING"]

    def close(self) -> None:
        self.m.app.close()


def producer_extras(adapter: Redisq, url: str, runs: int = 7) -> dict[str, float]:
    """delay() beside an un-pipelined LPUSH of 100 bytes (raw redis-py), in alternating runs
    whose order flips each time (on a shared VM a round trip's cost drifts within seconds);
    and task.map of 20,000 jobs. Medians."""
    raw = redis.Redis.from_url(url)
    payload = b"x" * 100
    n, n_map = 3000, 20_000

    def lpush() -> None:
        for _ in range(n):
            raw.lpush("floor", payload)

    def delay() -> None:
        for _ in range(n):
            adapter.enqueue_noop()

    got: dict[str, list[float]] = {"lpush": [], "delay": [], "map": []}
    for i in range(runs):
        order = [("lpush", lpush, n), ("delay", delay, n)]
        for name, fn, count in order if i % 2 else order[::-1]:
            raw.flushall()
            t = time.perf_counter()
            fn()
            got[name].append(count / (time.perf_counter() - t))
        raw.flushall()
        t = time.perf_counter()
        adapter.enqueue_bulk(n_map)
        got["map"].append(n_map / (time.perf_counter() - t))
    raw.flushall()
    return {k: statistics.median(v) for k, v in got.items()}


def run_redisq(reps: int, scale: float) -> dict[str, Any]:
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-bench-compare-"), port=free_port(),
                         appendfsync="everysec").start()
    try:
        adapter = Redisq()
        try:
            adapter.setup(server.url)
        except ImportError as exc:
            return {"library": "redisq", "pending": f"API not available yet ({exc})"}
        try:
            extras = producer_extras(adapter, server.url)
        finally:
            adapter.close()
        row = peers.measure(adapter, server.url, reps, scale)
        row.update(lpush_floor_per_s=round(extras["lpush"]), delay_per_s=round(extras["delay"]),
                   map_per_s=round(extras["map"]))
        return row
    except Exception as exc:  # report, do not hide the peers' figures
        return {"library": "redisq", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def run_peers(reps: int, scale: float) -> dict[str, Any]:
    if not PEERS_PY.exists():
        sys.exit("bench/.venv-peers is missing: run  bash bench/setup_peers.sh  first")
    out = RESULTS / "peers.json"
    subprocess.run([str(PEERS_PY), str(HERE / "peers.py"), "--reps", str(reps), "--scale",
                    str(scale), "--out", str(out)], check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    ap = argparse.ArgumentParser(description="redisq vs peers (see the docstring)")
    ap.add_argument("--peers-json", help="reuse this peers.py output instead of running peers")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every job count")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="redisq worker threads (default 8; Huey runs 4, Dramatiq 8)")
    opts = ap.parse_args()
    Redisq.concurrency = opts.concurrency
    RESULTS.mkdir(exist_ok=True)

    peer_data = (json.loads(Path(opts.peers_json).read_text()) if opts.peers_json
                 else run_peers(opts.reps, opts.scale))
    me = run_redisq(opts.reps, opts.scale)
    rows = [me, *peer_data["results"]]
    print(f"\npeers measured {peer_data['measured_at']} ({peer_data['versions']}); "
          f"redisq now; {opts.reps} reps\n")
    peers.print_table(rows)

    ok_peers = [r for r in peer_data["results"] if "error" not in r]
    if "drain_per_s" not in me or not ok_peers:
        print("\nno ratios: redisq " + ("pending" if me.get("pending") else "failed")
              if "drain_per_s" not in me else "\nno ratios: no peer succeeded")
    else:
        drain = max(ok_peers, key=lambda r: r["drain_per_s"])
        enq = max(ok_peers, key=lambda r: r["enqueue_per_s"])
        p50 = min(ok_peers, key=lambda r: r["latency_p50_ms"])
        p99 = min(ok_peers, key=lambda r: r["latency_p99_ms"])
        checks = [
            ("drain, 1 worker process", f"{me['drain_per_s']:,}/s",
             f"{drain['library']} {drain['drain_per_s']:,}/s", me["drain_per_s"] / drain["drain_per_s"],
             ">= 5x fastest peer", me["drain_per_s"] >= 5 * drain["drain_per_s"]),
            ("enqueue one by one", f"{me['enqueue_per_s']:,}/s",
             f"{enq['library']} {enq['enqueue_per_s']:,}/s", me["enqueue_per_s"] / enq["enqueue_per_s"],
             "(information)", None),
            ("delay() vs LPUSH floor", f"{me['delay_per_s']:,}/s",
             f"LPUSH {me['lpush_floor_per_s']:,}/s", me["delay_per_s"] / me["lpush_floor_per_s"],
             ">= 0.90 of LPUSH", me["delay_per_s"] >= 0.9 * me["lpush_floor_per_s"]),
            ("task.map bulk enqueue", f"{me['map_per_s']:,}/s", "-", None,
             ">= 100,000/s", me["map_per_s"] >= 100_000),
            ("enqueue→start p50", f"{me['latency_p50_ms']:.2f} ms",
             f"{p50['library']} {p50['latency_p50_ms']:.2f} ms",
             me["latency_p50_ms"] / p50["latency_p50_ms"], "<= best peer's",
             me["latency_p50_ms"] <= p50["latency_p50_ms"]),
            ("enqueue→start p99", f"{me['latency_p99_ms']:.2f} ms",
             f"{p99['library']} {p99['latency_p99_ms']:.2f} ms",
             me["latency_p99_ms"] / p99["latency_p99_ms"], "<= 2 ms", me["latency_p99_ms"] <= 2.0),
        ]
        print(f"\n{'measure':<26}{'redisq':>14}  {'best peer':<24}{'ratio':>7}  target")
        for name, mine, best, ratio, target, ok in checks:
            r_txt = f"{ratio:>7.2f}" if ratio is not None else f"{'':>7}"
            mark = "" if ok is None else verdict(ok)
            print(f"{name:<26}{mine:>14}  {best:<24}{r_txt}  {target:<20}{mark}")
    out = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "redisq": me, "peers": peer_data}
    (RESULTS / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'compare.json'}")


if __name__ == "__main__":
    main()
