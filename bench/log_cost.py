"""What the default INFO logging costs a worker: drains at INFO against ``--log-level WARNING``.

    .venv/bin/python bench/log_cost.py [--reps 5] [--jobs 10000] [--tree /tmp/lc-<sha>]

The drains of ``compare.py`` (the same harness, ``peers.drain_once``: one ``python -m redisq
worker --concurrency 8`` process per drain, its output to ``bench/results/worker-redisq.log``,
the light task timed inside the task bodies, the INCR task by its counter) for the light and
INCR tasks at INFO and at WARNING, in rounds whose order rotates, so machine noise hits every
variant alike; prints the medians, the INFO ÷ WARNING ratios (target ≥ 0.90) and each round's
ratios (their spread is the machine's noise). ``--tree`` also drains with the redisq of another
checkout (``git worktree add --detach /tmp/lc-<sha> <sha>``), interleaved, to compare commits.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402
import peers  # noqa: E402

from redisq.backend.embedded import RedisServer, free_port  # noqa: E402

VARIANTS = {"light WARNING": ("light", "WARNING"), "light INFO": ("light", "INFO"),
            "incr WARNING": ("incr", "WARNING"), "incr INFO": ("incr", "INFO")}


def drains(url: str, trees: list[Path], reps: int, n: int) -> dict[tuple[Path, str], list[float]]:
    r = redis.Redis.from_url(url)
    runs = [(tree, v) for tree in trees for v in VARIANTS]
    got: dict[tuple[Path, str], list[float]] = {k: [] for k in runs}
    for i in range(reps):
        for tree, name in runs[i % len(runs):] + runs[:i % len(runs)]:
            kind, level = VARIANTS[name]
            adapter = compare.Redisq(level)
            adapter.cwd = tree  # the worker runs this checkout's redisq
            adapter.setup(url)
            try:
                got[(tree, name)].append(peers.drain_once(adapter, r, url, kind, n))
            finally:
                adapter.close()
        print(f"round {i + 1}/{reps} done", file=sys.stderr)
    return got


def report(tree: Path, got: dict[tuple[Path, str], list[float]]) -> None:
    med = {v: statistics.median(got[(tree, v)]) for v in VARIANTS}
    print(f"\n{tree}: " + ", ".join(f"{v} {x:,.0f}/s" for v, x in med.items()))
    for kind in ("light", "incr"):
        info, quiet = got[(tree, f"{kind} INFO")], got[(tree, f"{kind} WARNING")]
        ratio = med[f"{kind} INFO"] / med[f"{kind} WARNING"]
        rounds = " ".join(f"{a / b:.2f}" for a, b in zip(info, quiet, strict=True))
        print(f"  {kind}: INFO / WARNING {ratio:.2f} (target >= 0.90); per round {rounds}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--tree", type=Path, help="also drain with this checkout's redisq")
    opts = ap.parse_args()
    trees = [compare.ROOT] + ([opts.tree.resolve()] if opts.tree else [])
    compare.RESULTS.mkdir(exist_ok=True)
    (compare.RESULTS / "worker-redisq.log").write_bytes(b"")
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-bench-logcost-"), port=free_port(),
                         appendfsync="everysec").start()
    try:
        got = drains(server.url, trees, opts.reps, opts.jobs)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    for tree in trees:
        report(tree, got)


if __name__ == "__main__":
    main()
