"""What one request costs the web process, per route, without HTTP or siege: the load test's
app (``tests/load/loadapp.py``: the web app plus the seed-style LPUSH route and a JSON POST
without Redis) called as WSGI in this process, against a private Redis.

Per route, after a warm-up: CPU per request of this process and of redis-server (medians of
alternating rounds), and Redis commands and round trips (sends on a connection) per request.
``--profile`` prints cProfile (CPU time) of each route. The HTTP server's own share (accept,
parse, close: most of a gunicorn sync worker's CPU) is the same for every route and not here;
``tests/load/siege.sh`` measures it all under gunicorn.

On a shared machine CPU times move by ±30 %; instruction counts do not. Run one route under
callgrind at two request counts and divide the difference (the warm-up and start cancel):

    valgrind --tool=callgrind .venv/bin/python bench/web_cost.py --only prodcons --n 300 --raw
    valgrind --tool=callgrind .venv/bin/python bench/web_cost.py --only prodcons --n 1300 --raw

    .venv/bin/python bench/web_cost.py [--n 3000] [--rounds 5] [--only prodcons,seed-lpush]
        [--profile] [--raw]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.connection import AbstractConnection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redisq.backend.embedded import RedisServer, free_port  # noqa: E402
from tests.load.loadapp import create_app  # noqa: E402

BODIES = {"prodcons": b'{"task":"demo.count","args":["demo:count:load"]}',
          "seed-lpush": b'{"task":"demo.count","args":[]}',
          "bare-post": b'{"task":"demo.count","args":[]}'}
SENDS = [0]  # sends on any Redis connection: one per round trip


def count_sends() -> None:
    send = AbstractConnection.send_packed_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        SENDS[0] += 1
        send(self, *args, **kwargs)
    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def requester(app: Any, route: str) -> Callable[[int], None]:
    """``run(n)``: n POSTs of ``route`` as gunicorn would call the app (loopback, JSON)."""
    data = BODIES[route]

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        if not status.startswith("20"):
            raise RuntimeError(f"{route}: {status}")

    def run(n: int) -> None:
        for _ in range(n):
            environ = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/" + route,
                       "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                       "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000",
                       "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data)),
                       "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
                       "wsgi.input": io.BytesIO(data), "wsgi.errors": sys.stderr,
                       "wsgi.multithread": False, "wsgi.multiprocess": True,
                       "wsgi.run_once": False, "wsgi.version": (1, 0),
                       "HTTP_USER_AGENT": "siege", "HTTP_ACCEPT": "*/*"}
            out = app(environ, start_response)
            b"".join(out)
            out.close()
    return run


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per route and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(BODIES), help="routes, comma-separated")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--raw", action="store_true",
                        help="only the warm-up and --n requests of each route (for callgrind)")
    opts = parser.parse_args()
    routes = [r for r in opts.only.split(",") if r]
    if not routes or set(routes) - set(BODIES):
        parser.error(f"--only: names among {','.join(BODIES)}")
    server = RedisServer(Path(tempfile.mkdtemp(prefix="redisq-webcost-")), port=free_port()).start()
    try:
        os.environ.update(REDIS_URL=server.url, REDISQ_APP="webapp.tasks:app")
        for key in [k for k in os.environ if k.startswith("REDISQ_") and k != "REDISQ_APP"]:
            del os.environ[key]
        app = create_app()
        runs = {r: requester(app, r) for r in routes}
        for run in runs.values():
            run(300)  # warm-up: connections, the queue index, specialised bytecode
        if opts.raw:
            for run in runs.values():
                run(opts.n)
            return 0
        measure(server, runs, opts.n, opts.rounds)
        if opts.profile:
            for route, run in runs.items():
                prof = cProfile.Profile(time.process_time)
                prof.runcall(run, opts.n)
                print(f"==== {route}, {opts.n} requests, CPU time")
                prof.create_stats()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    finally:
        server.stop()
    return 0


def measure(server: RedisServer, runs: dict[str, Callable[[int], None]], n: int,
            rounds: int) -> None:
    """Commands and round trips per request, then CPU per request in alternating rounds."""
    client = server.client()
    count_sends()
    for route, run in runs.items():
        client.config_resetstat()
        SENDS[0] = 0
        run(1000)
        sends = SENDS[0]
        stats = client.info("commandstats")
        cmds = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()
                if "config" not in k}
        print(f"{route:<11} per request: {sends / 1000:.2f} round trips, commands "
              + (", ".join(f"{k} {v / 1000:.2f}" for k, v in cmds.items()) or "none"))
    cpu: dict[str, list[tuple[float, float]]] = {r: [] for r in runs}
    for rnd in range(rounds):
        order = list(runs.items())
        for route, run in order[::-1] if rnd % 2 else order:
            t0, r0 = time.process_time(), cpu_s(server.pid)
            run(n)
            cpu[route].append(((time.process_time() - t0) / n * 1e6,
                               (cpu_s(server.pid) - r0) / n * 1e6))
    for route, values in cpu.items():
        web = [w for w, _ in values]
        redis_ = [r for _, r in values]
        print(f"{route:<11} CPU per request: web process {statistics.median(web):6.1f} us "
              f"(min {min(web):.1f}), redis-server {statistics.median(redis_):5.1f} us")


if __name__ == "__main__":
    sys.exit(main())
