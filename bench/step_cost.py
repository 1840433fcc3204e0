"""The pure per-job steps, in microseconds: building a message (``App.prepare``, what
``delay()`` does before its round trip) and running a no-op job (``execute``, what a worker
does between its round trips), without middleware, with one no-op middleware, and with
per-call options. No Redis involved.

    python bench/step_cost.py [--n 20000] [--reps 40]

Each figure is the best of ``reps`` runs of ``n`` calls (the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from redisq import App
from redisq.execution import execute
from redisq.job import JobContext
from redisq.model import Envelope


class NoOp:
    """A middleware with every method, doing nothing."""

    def before_enqueue(self, envelope: Envelope) -> None:
        return None

    def after_enqueue(self, job: Any) -> None: ...
    def before_execute(self, job: JobContext) -> None: ...
    def after_execute(self, job: JobContext, outcome: Any) -> None: ...


def best_us(fn: Callable[[], object], n: int, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def measure(app: App, n: int, reps: int, **options: Any) -> tuple[float, float]:
    task = app.tasks["bench.noop"]
    opts = options or None
    env = app.prepare("bench.noop", (1,), None, None, None, opts).env  # as a worker decodes it
    ctx = JobContext("j1", "bench.noop", "default", 1, headers=env.headers)
    return (best_us(lambda: app.prepare("bench.noop", (1,), None, None, None, opts), n, reps),
            best_us(lambda: execute(task, env, ctx, app.hooks), n, reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=40)
    ns = parser.parse_args()
    app = App("redis://127.0.0.1:1/0")  # never connected

    @app.task(name="bench.noop")
    def noop(x: int) -> int:
        return x

    rows = [("no middleware", measure(app, ns.n, ns.reps)),
            ("per-call options", measure(app, ns.n, ns.reps, retries=1,
                                         headers={"request_id": "r-1"}))]
    app.add_middleware(NoOp())
    rows.append(("one no-op middleware", measure(app, ns.n, ns.reps)))
    print(f"{'':<22}{'prepare us':>12}{'execute us':>12}")
    for name, (prepare_us, execute_us) in rows:
        print(f"{name:<22}{prepare_us:>12.3f}{execute_us:>12.3f}")


if __name__ == "__main__":
    main()
