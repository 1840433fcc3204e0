"""A worker frozen past its lease (SIGSTOP; a paused VM or a stop-the-world GC look the same):
another worker recovers what it held and runs it; when the frozen one wakes it must not start
what it no longer owns (a job its idle blocking move took while it was stopped, already
finished elsewhere), and a job that was running when it froze may finish a second time but
must not overwrite the outcome the other worker recorded. Then it carries on under a new lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
import redis

from redisq import App
from redisq.backend import keys
from redisq.model import TERMINAL
from tests.support.frozen_app import FINISHES, LATE, STARTS
from tests.support.procs import start_worker
from tests.support.wait import wait_until

LEASE_S = 1.0
BLOCK_S = 0.5  # below the lease: an idle worker always has a blocking move in flight
FREEZE_S = 3 * LEASE_S
LONG_S = 1.2
TASK = "f.work"

pytestmark = pytest.mark.slow


class Outcomes:
    """Every job outcome published on the events channel, in order (a settle refused
    publishes nothing, so two terminal events for one job mean its outcome was written twice)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(keys.EVENTS_CHANNEL)
        self.events: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            msg = self._pubsub.get_message(timeout=0.05)
            if msg is not None:
                event = json.loads(msg["data"])
                if event.get("type") == "job":
                    self.events.append((event["id"], event["status"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()

    def overwritten(self) -> dict[str, int]:
        """Jobs whose terminal outcome was written more than once."""
        n = Counter(i for i, status in self.events if status in TERMINAL)
        return {i: c for i, c in n.items() if c > 1}


def worker(url: str, wid: str, concurrency: int, queues: str) -> subprocess.Popen[bytes]:
    return start_worker(url, "--app", "tests.support.frozen_app:app", "--worker-id", wid,
                        "--lease-s", str(LEASE_S), "--block-timeout-s", str(BLOCK_S),
                        "--concurrency", str(concurrency), "--queues", queues,
                        "--log-level", "INFO")


def blocked_in_move(r: redis.Redis, pid: int, moves: int = 1) -> bool:
    """Whether the process ``pid`` has (at least ``moves``) blocking moves waiting in the
    server."""
    return sum(c.get("name", "").endswith(f":{pid}") and c.get("cmd") == "blmove"
               and "b" in c.get("flags", "") for c in r.client_list()) >= moves


def held_ids(r: redis.Redis, wid: str) -> set[str]:
    return {json.loads(b)["id"] for b in r.lrange(keys.processing("default", wid), 0, -1)}


def records(app: App, ids: list[str], queue: str = "default") -> list[dict[str, str]]:
    return [app.records.get(queue, i) for i in ids]


def all_succeeded(app: App, ids: list[str], queue: str = "default") -> bool:
    return all(r.get("status") == "succeeded" for r in records(app, ids, queue))


def finish(*procs: subprocess.Popen[bytes]) -> list[str]:
    """SIGTERM all (a clean stop: each recorder writes what it holds), then their logs."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    logs = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=6)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        logs.append(err.decode(errors="replace"))
    return logs


def test_a_worker_frozen_past_its_lease_runs_nothing_it_lost(redis_url: str,
                                                              real_redis: redis.Redis) -> None:
    app = App(redis_url)
    app.task(name=TASK)(lambda n, sleep_s=0.0: n)  # declared here to enqueue it
    outcomes = Outcomes(real_redis)
    # wa also serves a queue of its own: one blocking move per queue (waiter threads), and
    # a way to see it run jobs after it woke while wb is still there.
    wa, wb = worker(redis_url, "wa", 8, "default,solo"), worker(redis_url, "wb", 4, "default")
    try:
        wait_until(lambda: real_redis.sismember(keys.consumers("default"), "wa"), 5,
                   what="worker wa to register")
        # Long jobs, most (if wb is not up yet: all) taken by wa, running when it freezes.
        longs = [j.id for j in app.enqueue_many(TASK, [((i,), {"sleep_s": LONG_S})
                                                       for i in range(3)])]
        wait_until(lambda: all(r.get("status") == "started" for r in records(app, longs)), 3,
                   what="the long jobs to start")
        on_wa = [r["id"] for r in records(app, longs) if r["worker"] == "wa"]
        assert on_wa, "wa runs long jobs"
        wait_until(lambda: all(real_redis.hexists(STARTS, i) for i in on_wa), 3,
                   what="wa's long jobs to be running (not only handed to a thread)")
        # Both of wa's queues' moves (the client list does not say which queue a move
        # waits on; with one out, it may be solo's while default's is between two waits).
        wait_until(lambda: real_redis.sismember(keys.consumers("default"), "wb")
                   and blocked_in_move(real_redis, wa.pid, moves=2), 5,
                   what="wb up, and wa's idle blocking moves in flight")
        epoch_before = real_redis.hget(keys.epochs("default"), "wa")
        wa.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        assert blocked_in_move(real_redis, wa.pid), "the move is still waiting in the server"
        shorts = [j.id for j in app.enqueue_many(TASK, [((100 + i,), {"sleep_s": 0.02})
                                                        for i in range(30)])]
        taken_frozen = held_ids(real_redis, "wa") & set(shorts)
        assert taken_frozen, "wa's blocking move took a short job while wa was stopped"
        # The other worker recovers wa's jobs once its lease ran out, and finishes them.
        wait_until(lambda: all_succeeded(app, shorts), FREEZE_S,
                   what="wb to run the short jobs, the one wa's move took included")
        time.sleep(max(0.0, frozen_at + FREEZE_S - time.monotonic()))  # the freeze itself
        wa.send_signal(signal.SIGCONT)
        woke_at = time.monotonic()
        # The long jobs ran on both: wb after recovering them, wa when it woke.
        wait_until(lambda: all_succeeded(app, longs + shorts)
                   and all(int(real_redis.hget(FINISHES, i) or 0) >= 2 for i in on_wa), 4,
                   what="every job finished (the long ones twice)")
        # wa carries on under a new epoch (it runs its own queue's new jobs).
        after = [j.id for j in app.enqueue_many(TASK, [((200 + i,), {}) for i in range(10)],
                                                queue="solo")]
        wait_until(lambda: all_succeeded(app, after, "solo"), 3,
                   what="wa to run new jobs after waking")
        assert wa.poll() is None and wb.poll() is None, "both kept running"
        log_wa, log_wb = finish(wa, wb)
        starts = {k.decode(): int(v) for k, v in real_redis.hgetall(STARTS).items()}
        late = [x.decode() for x in real_redis.lrange(LATE, 0, -1)]
        twice = outcomes.overwritten()
        dup_starts = {i for i, n in starts.items() if n > 1}
        print(f"\nfrozen {FREEZE_S:.1f} s (lease {LEASE_S} s), woke {woke_at - frozen_at:.2f} s "
              f"after the stop; started after finishing elsewhere: {len(late)}; outcomes "
              f"written twice: {len(twice)}; started twice: {len(dup_starts)} "
              f"(long jobs running at the freeze: {len(on_wa)}); taken by the frozen move: "
              f"{len(taken_frozen)}")
        for entry in late:  # what each worker logged about it
            for name, text in (("wa", log_wa), ("wb", log_wb)):
                print("\n".join(f"{name}: {line}" for line in text.splitlines()
                                if entry.split()[0] in line))
        assert late == [], f"jobs started after they had finished elsewhere: {late}"
        assert twice == {}, f"outcomes written more than once: {twice}"
        assert dup_starts <= set(on_wa), "only jobs running at the freeze may run twice"
        jobs = longs + shorts + after
        assert all(starts.get(i, 0) >= 1 for i in jobs) and all_succeeded(app, longs + shorts)
        assert "lease on queue default lost" in log_wa, "wa learned that its epoch ended"
        assert (real_redis.hget(keys.epochs("default"), "wa") or b"") != epoch_before
    finally:
        for p in (wa, wb):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(5)
        outcomes.close()
        app.close()
