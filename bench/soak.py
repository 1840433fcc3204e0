"""Soak: a million jobs through ``redisq worker --processes 2``, 1 % failing and 1 % retried.

    .venv/bin/python bench/soak.py                      # 1,000,000 jobs (~5-10 min quiet)
    .venv/bin/python bench/soak.py --jobs 100000        # a shorter run (~1-2 min)

On a private redis-server (loopback, free port), with short record TTLs (``--ttl-s``, 20 s):

1. starts ``redisq worker --app bench.soak_tasks:app --processes 2`` (WARNING logging) and
   takes Redis's baseline (``used_memory``, every key with its size) after ``--warmup`` jobs
   (1,000) ran and their records expired (scripts loaded, connections made);
2. enqueues ``--jobs`` jobs of ``soak.work`` with ``map`` in batches of 10,000, keeping at most
   ``--max-queued`` waiting (the producer is not what is measured); job i % 100 == 0 always
   fails, i % 100 == 1 fails once and succeeds on its retry (bench/soak_tasks.py);
3. samples each worker process's RSS every second; the growth that counts is from the moment
   ``--rss-after`` jobs (100,000) were settled to the end;
4. checks every job is accounted for: the queue's counters (succeeded, failed, retrying) are
   exactly what the job numbers imply, and each succeeding job's 2-bit counter in
   ``soak:done`` is 1 (so nothing was lost and nothing ran to success twice);
5. waits for the TTLs to pass (Redis expires keys in the background: it polls the key count
   until it is back to the baseline's), then compares ``used_memory`` with the baseline and
   lists every key with no TTL whose size grew since the baseline (an unbounded key).

Targets (issue 17): every job accounted for; RSS growth <= 10 MB per worker process after
the first 100k; Redis memory back within 10 % of its baseline; no key left unbounded. Exit 0
when all hold, 1 otherwise. Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))

from redisq.backend import keys  # noqa: E402
from redisq.backend.embedded import RedisServer, free_port  # noqa: E402
from redisq.backend.registry import Registry  # noqa: E402

QUEUE = "default"
#: INFO memory fields saved with the result (where a difference from the baseline sits).
MEMORY_PARTS = ("used_memory_dataset", "used_memory_overhead", "mem_clients_normal", "used_memory_lua",
                "used_memory_vm_eval", "used_memory_vm_total",
                "mem_aof_buffer", "used_memory_scripts", "mem_fragmentation_ratio")
BATCH = 10_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def key_sizes(r: redis.Redis) -> dict[str, tuple[str, int, int, int]]:
    """Every key: (type, size in elements or bytes, TTL in s or -1, MEMORY USAGE bytes)."""
    out = {}
    size_of = {"list": r.llen, "hash": r.hlen, "zset": r.zcard, "set": r.scard,
               "string": r.strlen, "stream": r.xlen}
    for k in r.scan_iter(count=1000):
        kind = r.type(k).decode()
        size = size_of[kind](k) if kind in size_of else 0
        out[k.decode()] = (kind, int(size), int(r.ttl(k)), int(r.memory_usage(k) or 0))
    return out


def used_memory(r: redis.Redis, samples: int = 10) -> int:
    """``used_memory``, the least of ``samples`` readings 0.2 s apart: an idle Redis with a
    worker's connections moves by ~10 % of a 2 MB baseline (client query and reply buffers
    come and go with the worker's blocking waits and heartbeats); what is retained shows in
    the least reading, at the baseline and at the end alike. The slow log is emptied first:
    its 128 entries keep up to 32 arguments of each slow command (a 10,000-job ``map``),
    ~0.5 MB that is Redis's diagnostics, bounded by ``slowlog-max-len``, not the queue's."""
    r.slowlog_reset()
    readings = []
    for i in range(samples):
        if i:
            time.sleep(0.2)
        readings.append(int(r.info("memory")["used_memory"]))
    return min(readings)


def memory_parts(r: redis.Redis) -> dict[str, Any]:
    """INFO memory's main fields and MEMORY STATS (where a difference from the baseline sits)."""
    info = r.info("memory")
    out: dict[str, Any] = {k: info.get(k) for k in MEMORY_PARTS}
    raw = r.execute_command("MEMORY", "STATS")
    stats_ = dict(zip(raw[::2], raw[1::2], strict=True)) if isinstance(raw, list) else raw
    out["memory_stats"] = {(k.decode() if isinstance(k, bytes) else str(k)): v
                           for k, v in stats_.items() if isinstance(v, (int, float))}
    return out


def stats(r: redis.Redis) -> dict[str, int]:
    raw = r.hgetall(keys.stats(QUEUE))
    return {k.decode(): int(float(v)) for k, v in raw.items() if not k.startswith(b"dur:")}


def expected(n: int) -> dict[str, int]:
    """The queue's counters for jobs 0..n-1: a failing job is retried once too (retries=1)."""
    failing = len(range(0, n, 100))
    retried = len(range(1, n, 100))
    return {"enqueued": n, "succeeded": n - failing, "failed": failing,
            "retrying": failing + retried}


def check_done(r: redis.Redis, n: int) -> list[str]:
    """Each job's 2-bit success counter: 1 for every job that succeeds, 0 for the failing."""
    bits = r.get("soak:done") or b""
    bits += b"\0" * ((2 * n + 7) // 8 - len(bits))
    problems = []
    for i in range(n):
        byte, shift = divmod(2 * i, 8)
        count = (bits[byte] >> (6 - shift)) & 3
        want = 0 if i % 100 == 0 else 1
        if count != want:
            problems.append(f"job {i}: succeeded {count} times (expected {want})")
            if len(problems) >= 10:
                break
    return problems


def start_worker(url: str, opts: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_")}
    env.update(REDIS_URL=url, PYTHONPATH=str(ROOT), REDISQ_RESULT_TTL_S=str(opts.ttl_s),
               REDISQ_FAILURE_TTL_S=str(opts.ttl_s))
    cmd = [sys.executable, "-m", "redisq", "worker", "--app", "bench.soak_tasks:app",
           "--queues", QUEUE, "--processes", str(opts.processes), "--concurrency",
           str(opts.concurrency), "--url", url, "--log-level", "WARNING"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def wait_for(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def run(opts: argparse.Namespace, url: str) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    os.environ["REDIS_URL"] = url
    from bench import soak_tasks

    log = RESULTS / "worker-soak.log"
    log.write_bytes(b"")
    worker = start_worker(url, opts, log)
    try:
        wait_for(lambda: len(children(worker.pid)) == opts.processes
                 and len(Registry(r).workers()) == opts.processes, 30, "the worker processes")
        # The baseline is Redis after a warm-up of every path (success, retry, failure) and
        # its records' expiry: scripts loaded, connections and their buffers made, counters
        # created; what the soak then adds must go away the same way.
        warm = opts.warmup
        soak_tasks.work.map([((i,), {}) for i in range(opts.jobs, opts.jobs + warm)])
        wait_for(lambda: sum(stats(r).get(k, 0) for k in ("succeeded", "failed")) >= warm, 60,
                 "the warm-up jobs")
        r.delete("soak:done")
        time.sleep(opts.ttl_s)
        wait_for(lambda: not any(b":job:" in k for k in r.scan_iter(count=1000)),
                 opts.expire_timeout_s, "the warm-up records to expire")
        base_mem = used_memory(r)
        base_keys = key_sizes(r)
        base_stats = stats(r)
        base_parts = memory_parts(r)
        return drive(opts, r, worker, soak_tasks, base_mem, base_keys, base_stats, base_parts)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()


def drive(opts: argparse.Namespace, r: redis.Redis, worker: subprocess.Popen[bytes],
          soak_tasks: Any, base_mem: int, base_keys: dict[str, tuple[str, int, int, int]],
          base_stats: dict[str, int], base_parts: dict[str, Any]) -> dict[str, Any]:
    n, want = opts.jobs, expected(opts.jobs)
    sent, t0 = 0, time.monotonic()
    rss_at: dict[int, float] = {}
    rss_last: dict[int, float] = {}
    rss_max: dict[int, float] = {}
    next_sample = 0.0
    settled = 0
    while settled < n:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}); see {RESULTS}")
        if sent < n and r.llen(keys.pending(QUEUE)) < opts.max_queued:
            count = min(BATCH, n - sent)
            soak_tasks.work.map([((i,), {}) for i in range(sent, sent + count)])
            sent += count
            continue
        now = time.monotonic()
        if now >= next_sample:
            next_sample = now + 1.0
            s = stats(r)
            settled = sum(s.get(k, 0) - base_stats.get(k, 0) for k in ("succeeded", "failed"))
            for pid in children(worker.pid):
                mb = rss_mb(pid)
                rss_last[pid] = mb
                rss_max[pid] = max(rss_max.get(pid, 0.0), mb)
                if settled >= opts.rss_after and pid not in rss_at:
                    rss_at[pid] = mb
            print(f"  {now - t0:6.0f} s  enqueued {sent:>9,}  settled {settled:>9,}  "
                  f"RSS {', '.join(f'{v:.1f}' for v in rss_last.values())} MB", flush=True)
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    soak_tasks.app.close()  # the producer's connections (and their buffers) are not the queue's
    final = {k: v - base_stats.get(k, 0) for k, v in stats(r).items()}
    done_problems = check_done(r, n)
    counts_ok = all(final.get(k, 0) == v for k, v in want.items())
    growth = {pid: rss_last[pid] - rss_at[pid] for pid in rss_at if pid in rss_last}
    r.delete("soak:done")  # the soak's own bookkeeping, not the queue's
    # The TTLs: records expire ttl_s after their job settled; then Redis's background expiry.
    time.sleep(opts.ttl_s)
    try:
        wait_for(lambda: r.dbsize() <= len(base_keys), opts.expire_timeout_s,
                 "the records to expire")
    except TimeoutError as exc:
        print(f"  {exc} ({r.dbsize()} keys, {len(base_keys)} at the baseline)")
    slowlog_len = int(r.slowlog_len())  # (emptied by used_memory: see there)
    peak_mem = int(r.info("memory")["used_memory_peak"])
    # Redis shrinks its key tables in the background (databasesCron) once they are nearly
    # empty: give it until the deadline to come back within 10 %.
    deadline = time.monotonic() + opts.expire_timeout_s
    while (end_mem := used_memory(r)) > base_mem * 1.10 and time.monotonic() < deadline:
        time.sleep(0.5)
    breakdown = memory_parts(r)
    end_keys = key_sizes(r)
    unbounded = {k: v for k, v in end_keys.items()
                 if v[2] < 0 and v[1] > base_keys.get(k, ("", 0, -1, 0))[1] + 100}
    no_ttl_new = sorted(k for k, v in end_keys.items() if v[2] < 0 and k not in base_keys)
    rss_ok = bool(growth) and max(growth.values()) <= 10.0
    mem_ok = end_mem <= base_mem * 1.10
    return {
        "jobs": n, "processes": opts.processes, "concurrency": opts.concurrency,
        "ttl_s": opts.ttl_s, "seconds": round(elapsed, 1), "jobs_per_s": round(n / elapsed),
        "expected": want, "counted": final, "counts_ok": counts_ok,
        "done_problems": done_problems,
        "rss_mb_at_rss_after": {str(k): round(v, 1) for k, v in rss_at.items()},
        "rss_mb_end": {str(k): round(v, 1) for k, v in rss_last.items()},
        "rss_mb_max": {str(k): round(v, 1) for k, v in rss_max.items()},
        "rss_growth_mb": {str(k): round(v, 2) for k, v in growth.items()}, "rss_ok": rss_ok,
        "redis_used_memory_baseline": base_mem, "redis_used_memory_end": end_mem,
        "redis_memory_ratio": round(end_mem / base_mem, 3), "memory_ok": mem_ok,
        "redis_used_memory_peak": peak_mem,
        # Of what the soak made Redis take at its peak, the share still taken at the end.
        "redis_retained_of_peak": round((end_mem - base_mem) / max(peak_mem - base_mem, 1), 4),
        "redis_memory_baseline_parts": base_parts, "redis_memory_end_parts": breakdown,
        "keys_baseline": len(base_keys), "keys_end": len(end_keys),
        "slowlog_entries_emptied_at_end": slowlog_len,
        "unbounded_keys": {k: list(v) for k, v in unbounded.items()},
        "keys_at_baseline": {k: list(v) for k, v in base_keys.items()},
        "keys_at_end": {k: list(v) for k, v in end_keys.items()},
        "new_keys_without_ttl": no_ttl_new,
        "ok": counts_ok and not done_problems and rss_ok and mem_ok and not unbounded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--ttl-s", type=float, default=20.0, help="result and failure TTL")
    ap.add_argument("--max-queued", type=int, default=50_000)
    ap.add_argument("--rss-after", type=int, default=100_000,
                    help="RSS growth is counted from this many settled jobs")
    ap.add_argument("--expire-timeout-s", type=float, default=120.0)
    ap.add_argument("--warmup", type=int, default=1000, help="jobs run before the baseline")
    opts = ap.parse_args()
    opts.rss_after = min(opts.rss_after, opts.jobs // 2)
    RESULTS.mkdir(exist_ok=True)
    server = RedisServer(tempfile.mkdtemp(prefix="redisq-soak-"), port=free_port(),
                         appendfsync="everysec").start()
    try:
        out = run(opts, server.url)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (RESULTS / "soak.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "done_problems"}, indent=2))
    for problem in out["done_problems"]:
        print("  " + problem)
    print(f"\n{'PASS' if out['ok'] else 'FAIL'}: written to {RESULTS / 'soak.json'}")
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
