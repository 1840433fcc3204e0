"""redisq against Huey, Dramatiq, SAQ, arq, Celery and RQ, all in ONE run: one table, ratios.

    bash bench/setup_peers.sh                 # once: the peers' venv, with redisq's redis-py
    .venv/bin/python bench/compare.py         # ~8 minutes (peers ~5, redisq ~3)
    .venv/bin/python bench/compare.py --peers-json bench/results/peers.json   # reuse peers

Runs ``bench/peers.py`` with ``bench/.venv-peers/bin/python`` as a subprocess (the peers are
never installed in the project's venv; ``setup_peers.sh`` gives that venv the redis-py and
hiredis versions of this one, and this script says so, or warns, at the top of its output),
then measures redisq itself in this venv with the very same harness (``peers.measure``): each
library on its own fresh redis-server on a free loopback port; N jobs enqueued one by one
(enqueue/s), drained by ONE worker process (drain/s) with the INCR task and with the light task
(no Redis call in the job: ``peer_tasks/lightcount.py``), then enqueue → start latency on the
idle worker, jobs spaced 5-15 ms apart and back to back (p50/p99). redisq's worker is

    python -m redisq worker --app bench.redisq_tasks:app --mode prodcons --queues default \\
        --concurrency 8 --url URL --log-level WARNING      # --concurrency N to change

(WARNING like the peers, which all run with their quiet flags). Then, for redisq alone, in
alternating rounds on one server (medians): the light and INCR drains at the default log level
(INFO, output to a file) and quiet, the light drain with ``--processes 2``; the INCR task's own
floor (``task_floor.py``: the INCR from as many threads as --concurrency, no queue); ``delay()``
vs un-pipelined LPUSH, and ``task.map`` bulk enqueue. The closing table gives each ratio against
its target (issue 17).

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
import task_floor  # noqa: E402

from redisq.backend.embedded import RedisServer, free_port  # noqa: E402


class Redisq(peers.Adapter):
    name, drain_n, cwd = "redisq", 10_000, ROOT
    concurrency = 8  # --concurrency

    def __init__(self, log_level: str = "WARNING", processes: int = 1) -> None:
        self.log_level, self.processes = log_level, processes

    @property
    def worker_label(self) -> str:  # type: ignore[override]
        extra = f" --processes {self.processes}" if self.processes > 1 else ""
        return f"redisq worker --concurrency {self.concurrency}{extra}"

    def setup(self, url: str) -> None:
        import os

        os.environ["REDIS_URL"] = url
        sys.path.insert(0, str(ROOT))
        from bench import redisq_tasks  # the App API: App, @app.task, .delay, .map

        self.m = redisq_tasks

    def enqueue_noop(self) -> None:
        self.m.noop.delay()

    def enqueue_light(self) -> None:
        self.m.light.delay()

    def enqueue_stamp(self, sent: float) -> None:
        self.m.stamp.delay(sent)

    def enqueue_bulk(self, n: int) -> None:
        self.m.noop.map([((), {})] * n)

    def worker_cmd(self, url: str) -> list[str]:
        return [sys.executable, "-m", "redisq", "worker", "--app", "bench.redisq_tasks:app",
                "--mode", "prodcons", "--queues", "default", "--concurrency", str(self.concurrency),
                "--processes", str(self.processes), "--url", url, "--log-level", self.log_level]

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


#: redisq's drain variants, each (task kind, log level, processes), run in alternating rounds.
VARIANTS = {
    "light_quiet": ("light", "WARNING", 1),
    "light_info": ("light", "INFO", 1),
    "incr_quiet": ("incr", "WARNING", 1),
    "incr_info": ("incr", "INFO", 1),
    "light_quiet_p2": ("light", "WARNING", 2),
}


def drain_variants(url: str, reps: int, n: int) -> dict[str, float]:
    """Median drain/s of each of :data:`VARIANTS`: a fresh queue and worker per run, the order
    rotating each round so that machine noise hits every variant alike."""
    r = redis.Redis.from_url(url)
    got: dict[str, list[float]] = {k: [] for k in VARIANTS}
    names = list(VARIANTS)
    for i in range(reps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            kind, level, processes = VARIANTS[name]
            adapter = Redisq(level, processes)
            adapter.setup(url)
            try:
                got[name].append(peers.drain_once(adapter, r, url, kind, n))
            finally:
                adapter.close()
    r.flushall()
    return {k: round(statistics.median(v)) for k, v in got.items()}


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
        row["variants"] = drain_variants(server.url, reps, row["jobs"])
        row["task_floor_per_s"] = round(statistics.median(
            task_floor.incr_rate(server.url, row["jobs"], Redisq.concurrency) for _ in range(3)))
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


def best(rows: list[dict[str, Any]], key: str, low: bool = False) -> dict[str, Any]:
    have = [r for r in rows if key in r]
    return (min if low else max)(have, key=lambda r: r[key])


def checks(me: dict[str, Any], ok_peers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(measure, redisq, reference, ratio, target, pass or None) rows of the closing table."""
    v = me["variants"]
    light, incr = best(ok_peers, "drain_light_per_s"), best(ok_peers, "drain_per_s")
    enq = best(ok_peers, "enqueue_per_s")
    out: list[tuple[Any, ...]] = []

    def add(name: str, mine: float, ref_name: str, ref: float, target: str,
            ok: bool | None, unit: str = "/s") -> None:
        fmt = (lambda x: f"{x:.2f} ms") if unit == "ms" else (lambda x: f"{x:,.0f}/s")
        out.append((name, fmt(mine), f"{ref_name} {fmt(ref)}", mine / ref if ref else None,
                    target, ok))

    add("drain light, INFO", v["light_info"], light["library"], light["drain_light_per_s"],
        ">= 5x best peer", v["light_info"] >= 5 * light["drain_light_per_s"])
    add("drain light, quiet", v["light_quiet"], light["library"], light["drain_light_per_s"],
        "(information)", None)
    add("drain INCR, quiet", v["incr_quiet"], incr["library"], incr["drain_per_s"],
        "(information)", None)
    add("drain INCR, INFO", v["incr_info"], incr["library"], incr["drain_per_s"],
        "(information)", None)
    add("drain INCR vs task floor", v["incr_quiet"], f"INCR x{Redisq.concurrency}",
        me["task_floor_per_s"], ">= 0.8 of the floor",
        v["incr_quiet"] >= 0.8 * me["task_floor_per_s"])
    add("INFO logging, light", v["light_info"], "quiet", v["light_quiet"],
        ">= 0.90 (costs <= 10 %)", v["light_info"] >= 0.9 * v["light_quiet"])
    add("INFO logging, INCR", v["incr_info"], "quiet", v["incr_quiet"],
        ">= 0.90 (costs <= 10 %)", v["incr_info"] >= 0.9 * v["incr_quiet"])
    add("--processes 2, light", v["light_quiet_p2"], "1 process", v["light_quiet"],
        ">= 1.3x one process", v["light_quiet_p2"] >= 1.3 * v["light_quiet"])
    add("delay() vs LPUSH", me["delay_per_s"], "LPUSH", me["lpush_floor_per_s"],
        ">= 0.95 of LPUSH", me["delay_per_s"] >= 0.95 * me["lpush_floor_per_s"])
    add("enqueue one by one", me["enqueue_per_s"], enq["library"], enq["enqueue_per_s"],
        "(information)", None)
    add("task.map", me["map_per_s"], "-", 0, ">= 100,000/s", me["map_per_s"] >= 100_000)
    for label, key in (("spaced", "latency"), ("back-to-back", "latency_b2b")):
        p50, p99 = best(ok_peers, f"{key}_p50_ms", low=True), best(ok_peers, f"{key}_p99_ms", low=True)
        add(f"start p50, {label}", me[f"{key}_p50_ms"], p50["library"], p50[f"{key}_p50_ms"],
            "<= best peer's", me[f"{key}_p50_ms"] <= p50[f"{key}_p50_ms"], "ms")
        add(f"start p99, {label}", me[f"{key}_p99_ms"], p99["library"], p99[f"{key}_p99_ms"],
            "<= 1 ms", me[f"{key}_p99_ms"] <= 1.0, "ms")
    return out


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
    peer_redis = peer_data["versions"].get("redis", "?")
    same = "the same" if peer_redis == redis.__version__ else "DIFFERENT (rerun setup_peers.sh)"
    print(f"\npeers measured {peer_data['measured_at']} ({peer_data['versions']}); "
          f"redisq now; {opts.reps} reps\nredis-py: peers {peer_redis}, redisq "
          f"{redis.__version__}: {same}\n")
    peers.print_table([me, *peer_data["results"]])

    ok_peers = [r for r in peer_data["results"] if "error" not in r]
    if "variants" not in me or not ok_peers:
        print("\nno ratios: " + (f"redisq {me.get('error') or me.get('pending')}"
                                 if "variants" not in me else "no peer succeeded"))
    else:
        v = me["variants"]
        print(f"\nredisq drains (median of {opts.reps}, alternating): "
              + ", ".join(f"{k} {x:,}/s" for k, x in v.items())
              + f"; INCR floor ({Redisq.concurrency} threads) {me['task_floor_per_s']:,}/s")
        print(f"\n{'measure':<26}{'redisq':>14}  {'reference':<26}{'ratio':>7}  target")
        for name, mine, ref, ratio, target, ok in checks(me, ok_peers):
            r_txt = f"{ratio:>7.2f}" if ratio is not None else f"{'':>7}"
            mark = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{name:<26}{mine:>14}  {ref:<26}{r_txt}  {target:<24}{mark}")
    out = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "redisq": me, "peers": peer_data}
    (RESULTS / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'compare.json'}")


if __name__ == "__main__":
    main()
