"""Load test (a script, not a pytest test: it takes about two minutes). ``tests/load/siege.sh``.

Serves the web app with gunicorn (2 sync workers) on a free loopback port against a private
Redis, with a redisq worker, and runs siege (benchmark mode) against a bare route, POST
/prodcons, POST /pubsub, a seed-style LPUSH route and a JSON POST without Redis (``loadapp.py``,
the yardsticks) in the same run: ``-c 10 -r 500``, then ``-c 50 -t 20S``. Checks:

- availability 100 % and 0 failed transactions on every run;
- every accepted job processed exactly once: each job (``demo.count``) counts its own runs in a
  hash keyed by job id; once the worker has drained the queue, the ids in that hash must be
  exactly the ids of the job records the app created, each counted once;
- speed: POST /prodcons should reach 0.75 of the bare route's transactions/s (aim 0.85) and
  cost no more than the seed-style LPUSH route (issue 17: ``POST /prodcons / seed LPUSH`` >= 1.0,
  printed as the median of each round's ratio). Reported, not failed on, unless
  ``--strict-speed``: on a small shared machine other work moves trans/s by ±30 % between runs,
  so the CPU each request cost the web tier and Redis is printed as well.

By default the worker starts after the HTTP runs, so the figures measure the web tier alone
(as the issue's baseline did); ``--worker-during`` runs it throughout. ``--rounds N`` repeats
the runs (the machine may be shared: compare medians), every other round in reverse order, so
drift in the machine's load does not always favour the same route; ``--targets
prodcons,seed-lpush`` runs only those routes (more rounds of a pair in the same time);
``--quick`` is a short smoke run.

    .venv/bin/python tests/load/siege_load.py [--quick] [--worker-during] [--rounds N]
        [--targets NAME,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from redisq.backend import keys  # noqa: E402
from redisq.backend.embedded import RedisServer, free_port  # noqa: E402

SEEN = "demo:count:load"  # hash: job id -> times run (demo.count writes under demo:count only)
MIN_RATIO, TARGET_RATIO = 0.75, 0.85
#: The routes (``--targets`` names) and how the report names them.
ROUTES = {"hello": "bare GET /hello", "prodcons": "POST /prodcons", "pubsub": "POST /pubsub",
          "seed-lpush": "POST /seed-lpush", "bare-post": "POST /bare-post"}
URL_TAILS = {"hello": "/hello",
             "prodcons": f'/prodcons POST {{"task":"demo.count","args":["{SEEN}"]}}',
             "pubsub": '/pubsub POST {"channel":"load","message":{"n":1}}',
             "seed-lpush": '/seed-lpush POST {"task":"demo.count","args":[]}',
             "bare-post": '/bare-post POST {"task":"demo.count","args":[]}'}
SIEGERC = """verbose = false
quiet = true
json_output = true
logging = false
parser = false
protocol = HTTP/1.1
connection = close
limit = 255
"""


def siege(rc: Path, url_line: str, *args: str) -> dict[str, float]:
    cmd = ["siege", "-R", str(rc), "-j", "-q", *args]
    if " POST " in url_line:
        cmd += ["--content-type", "application/json"]
    for attempt in (1, 2):
        try:
            out = subprocess.run([*cmd, url_line], capture_output=True, text=True, timeout=180)
            break
        except subprocess.TimeoutExpired:
            # Seen on a loaded 2-core machine: siege itself never ends a -t run (the routes
            # still answer). Once more; a second hang is a failure.
            if attempt == 2:
                raise
            print(f"siege did not finish in 180 s ({' '.join(args)} {url_line.split()[0]}); "
                  "running it again", flush=True)
    return json.loads(out.stdout[out.stdout.index("{"):])


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_http(url: str, timeout_s: float = 20) -> None:
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="-r 50 and -t 5S")
    parser.add_argument("--worker-during", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--strict-speed", action="store_true", help="fail below 0.75 of bare")
    parser.add_argument("--unix", action="store_true",
                        help="Redis on its unix socket, as `redisq up` runs it (default: TCP "
                             "on a loopback port, as the issue's baseline)")
    parser.add_argument("--web-workers", type=int, default=2,
                        help="gunicorn sync workers (default 2, the issue's baseline)")
    parser.add_argument("--targets", default=",".join(ROUTES),
                        help=f"routes to run, comma-separated (default: all of {','.join(ROUTES)})")
    opts = parser.parse_args()
    chosen = [t for t in opts.targets.split(",") if t]
    if not chosen or set(chosen) - set(ROUTES):
        parser.error(f"--targets: names among {','.join(ROUTES)}")
    runs = [("-b", "-c", "10", "-r", "50" if opts.quick else "500"),
            ("-b", "-c", "50", "-t", "5S" if opts.quick else "20S")]
    tmp = Path(tempfile.mkdtemp(prefix="redisq-load-"))
    rc = tmp / "siegerc"
    rc.write_text(SIEGERC)
    server = RedisServer(tmp / "redis", port=None if opts.unix else free_port()).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISQ_")}
    env.update(REDIS_URL=server.url, REDISQ_APP="webapp.tasks:app", PYTHONPATH=str(ROOT))
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(opts.web_workers), "-k", "sync",
                            "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                            "tests.load.loadapp:create_app()"], env=env, cwd=ROOT)
    worker_cmd = [sys.executable, "-m", "redisq", "worker", "--app", "webapp.tasks:app",
                  "--concurrency", "16", "--log-level", "WARNING"]
    worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT) if opts.worker_during else None
    base = f"http://127.0.0.1:{port}"
    targets = {ROUTES[t]: base + URL_TAILS[t] for t in ROUTES if t in chosen}
    try:
        wait_http(base + "/hello")
        web_pids = [web.pid, *children(web.pid)]
        results = run_all(rc, runs, targets, opts.rounds, web_pids, server.pid)
        speed_ok = report(runs, results)
        ok = all(r["availability"] == 100.0 and r["failed_transactions"] == 0
                 for _, _, r in results)
        print(f"availability 100 % and 0 failed on every run: {'yes' if ok else 'NO'}")
        print(f"POST /prodcons >= {MIN_RATIO} of the bare route: {'yes' if speed_ok else 'NO'}")
        ok &= speed_ok or not opts.strict_speed
        # A -t run ends with requests still in the web app (siege does not count them): stop it
        # (gunicorn finishes those first) before the enqueue counter is read.
        web.terminate()
        web.wait(30)
        if worker is None:
            worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT)
        ok &= check_exactly_once(server, results)
    finally:
        for proc in (web, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def run_all(rc: Path, runs: list[tuple[str, ...]], targets: dict[str, str], rounds: int,
            web_pids: list[int], redis_pid: int) -> list[tuple[str, str, dict[str, float]]]:
    """Each run against each target; also the CPU each request cost the web tier and Redis
    (a machine shared with other work moves trans/s much more than it moves CPU per request)."""
    results = []
    for rnd in range(rounds):
        for run in runs:
            order = list(targets.items())
            for name, line in order[::-1] if rnd % 2 else order:
                web0, redis0 = cpu_s(web_pids), cpu_s([redis_pid])
                r = siege(rc, line, *run)
                n = max(r["transactions"], 1)
                r["web_cpu_us"] = (cpu_s(web_pids) - web0) / n * 1e6
                r["redis_cpu_us"] = (cpu_s([redis_pid]) - redis0) / n * 1e6
                results.append((" ".join(run), name, r))
                print(f"{' '.join(run):<16} {name:<16} {r['transaction_rate']:>8.1f} trans/s  "
                      f"{r['transactions']:>6} trans  availability {r['availability']:.2f} %  "
                      f"failed {r['failed_transactions']}  CPU/request: web "
                      f"{r['web_cpu_us']:.0f} us, redis {r['redis_cpu_us']:.0f} us", flush=True)
    return results


def report(runs: list[tuple[str, ...]], results: list[tuple[str, str, dict[str, float]]]) -> bool:
    """Median trans/s and CPU per request of each target per run, the ratios to bare and POST
    /prodcons against the seed-style LPUSH route (issue 17's target); returns whether POST
    /prodcons reached MIN_RATIO of the bare route in every run (true without both routes)."""
    ok = True
    bare, prodcons, seed = ROUTES["hello"], ROUTES["prodcons"], ROUTES["seed-lpush"]
    for run in map(" ".join, runs):
        rates = {name: [r["transaction_rate"] for rn, n, r in results if rn == run and n == name]
                 for name in ROUTES.values()}
        rate = {name: statistics.median(v) for name, v in rates.items() if v}
        if bare in rate:
            print(f"{run:<16} ratios to bare (target for POST /prodcons >= {MIN_RATIO}, aim "
                  f"{TARGET_RATIO}): " + ", ".join(f"{name.split()[-1]} {rate[name] / rate[bare]:.2f}"
                                                   for name in rate if name != bare))
            ok &= prodcons not in rate or rate[prodcons] / rate[bare] >= MIN_RATIO
        if prodcons in rate and seed in rate:
            # Each round's pair (run back to back) as well: the machine's drift cancels in it.
            pairs = [p / s for p, s in zip(rates[prodcons], rates[seed], strict=True)]
            print(f"{run:<16} POST /prodcons / seed LPUSH route = {statistics.median(pairs):.2f} "
                  f"(median of the rounds' ratios {', '.join(f'{x:.2f}' for x in pairs)}; "
                  "target >= 1.0)")
        cpu = {name: statistics.median(r["web_cpu_us"] + r["redis_cpu_us"]
                                       for rn, n, r in results if rn == run and n == name)
               for name in rate}
        print(f"{run:<16} CPU per request (web + redis): " + ", ".join(
            f"{name.split()[-1]} {us:.0f} us" for name, us in cpu.items()))
    return ok


def check_exactly_once(server: RedisServer,
                       results: list[tuple[str, str, dict[str, float]]]) -> bool:
    client = server.client()
    stats = keys.stats("default")
    accepted = int(client.hget(stats, "enqueued") or 0)
    posted = sum(int(r["successful_transactions"]) for _, name, r in results
                 if name == "POST /prodcons")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
            client.hlen(SEEN) < accepted or client.llen(keys.pending("default"))):
        time.sleep(0.2)
    time.sleep(1.0)  # a duplicate delivery, if there were one, would land now
    seen = {k.decode(): int(v) for k, v in client.hgetall(SEEN).items()}
    prefix = keys.job("default", "")
    records = {k.decode()[len(prefix):] for k in client.scan_iter(match=prefix + "*", count=1000)}
    for end in client.zrange(keys.done("default"), 0, -1):  # succeeded: in done buckets
        records |= {f.decode() for f in client.hkeys(keys.done_bucket("default", int(end)))
                    if not f.startswith(b"\x01")}  # (not the bucket's task/worker names)
    twice = sum(1 for v in seen.values() if v != 1)
    succeeded = int(client.hget(stats, "succeeded") or 0)
    print(f"accepted jobs {accepted} (siege counted {posted} 2xx), job records {len(records)}, "
          f"processed {len(seen)} distinct, more than once {twice}, "
          f"succeeded {succeeded}, dead {int(client.hget(stats, 'dead') or 0)}")
    # siege does not count requests cut off by -t, which the app may still have accepted.
    return (len(records) == accepted == len(seen) == succeeded and twice == 0
            and set(seen) == records and posted <= accepted)


if __name__ == "__main__":
    sys.exit(main())
