"""redisq against Huey, Dramatiq, SAQ, arq, Celery and RQ, in one run, with ratios.

    bash bench/setup_peers.sh            # once: the peers' own virtual environment
    .venv/bin/python bench/compare.py    # a few minutes

Every library gets a fresh Redis (on a free loopback port) and the same work: a no-op task that
INCRs a counter; one producer; one worker process run as the library is normally run (Huey 4
threads, Dramatiq 1 process x 8 threads, arq with a 10 ms poll, Celery solo, RQ SimpleWorker,
SAQ concurrency 10, redisq concurrency 8 with job records and results on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from redisq.server import RedisServer, free_port

HERE = Path(__file__).resolve().parent
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
DRAIN_N = {"redisq": 10000, "huey": 5000, "dramatiq": 5000, "saq": 3000, "arq": 3000,
           "celery": 2000, "rq": 1000}


def run(peer: str) -> dict:
    python = sys.executable if peer == "redisq" else str(PEERS_PY)
    server = RedisServer(tempfile.mkdtemp(prefix=f"bench-{peer}-"), port=free_port()).start()
    try:
        res = subprocess.run([python, str(HERE / "peer_run.py"), peer, server.url,
                              str(DRAIN_N[peer])], capture_output=True, text=True, timeout=600)
    finally:
        server.stop()
    if res.returncode != 0:
        return {"peer": peer, "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    if not PEERS_PY.exists():
        sys.exit("run bench/setup_peers.sh first")
    results = {p: run(p) for p in DRAIN_N}
    ok = {p: r for p, r in results.items() if "error" not in r}
    print(f"{'library':<10}{'drain/s':>10}{'enqueue/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for p, r in results.items():
        if "error" in r:
            print(f"{p:<10} failed: {r['error']}")
            continue
        print(f"{p:<10}{r['drain_per_s']:>10}{r['enqueue_per_s']:>11}"
              f"{r['latency_p50_ms']:>9}{r['latency_p99_ms']:>9}")
    peers = {p: r for p, r in ok.items() if p != "redisq"}
    if "redisq" in ok and peers:
        me = ok["redisq"]
        best_drain = max(peers.values(), key=lambda r: r["drain_per_s"])
        best_enq = max(peers.values(), key=lambda r: r["enqueue_per_s"])
        best_p50 = min(peers.values(), key=lambda r: r["latency_p50_ms"])
        print(f"\ndrain: redisq / fastest peer ({best_drain['peer']}) = "
              f"{me['drain_per_s'] / best_drain['drain_per_s']:.2f}  (target >= 5)")
        print(f"enqueue one by one: redisq / fastest peer ({best_enq['peer']}) = "
              f"{me['enqueue_per_s'] / best_enq['enqueue_per_s']:.2f}")
        print(f"enqueue -> start p50: redisq {me['latency_p50_ms']} ms vs best peer "
              f"({best_p50['peer']}) {best_p50['latency_p50_ms']} ms; redisq p99 "
              f"{me['latency_p99_ms']} ms (target <= 2)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "compare.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
