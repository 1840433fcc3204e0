"""The worker registry: who is working, where, on what, and whether its loop is alive.

Each worker keeps ``redisq:worker:<id>`` (a hash, TTL = lease) and its score in
``redisq:workers`` (last heartbeat, unix seconds). A worker whose hash expired is dead; its
messages are recovered through queue leases (see :mod:`redisq.queue`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from ..model import as_text
from . import keys
from .pressure import is_oom
from .scripts import Scripts


class Registry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def beat(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> bool:
        """Publish the worker's state; one round trip. Returns False when Redis is at
        maxmemory: the entry is then written by the ``allow-oom`` steps instead (a second
        round trip), with ``redis_full`` true, so that the worker never looks dead (or well)
        because Redis is full."""
        now = time.time()
        mapping: dict[FieldT, EncodableT] = {k: v if isinstance(v, str) else json.dumps(v)
                                              for k, v in info.items()}
        mapping["last_seen"] = f"{now:.3f}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.worker(worker_id), mapping={**mapping, "redis_full": "false"})
        pipe.pexpire(keys.worker(worker_id), int(ttl_s * 1000))
        pipe.zadd(keys.WORKERS, {worker_id: now})
        try:
            pipe.execute()
            return True
        except redis.ResponseError as exc:
            if not is_oom(exc):
                raise
        mapping["redis_full"] = "true"
        Scripts(self.client, ("beat", "beat_index")).run_many([
            ("beat", [keys.worker(worker_id)],
             [int(ttl_s * 1000), *(x for kv in mapping.items() for x in kv)]),
            ("beat_index", [keys.WORKERS], [f"{now:.3f}", worker_id])])
        return False

    def remove(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(keys.worker(worker_id))
        pipe.zrem(keys.WORKERS, worker_id)
        pipe.execute()

    def workers(self) -> list[dict[str, Any]]:
        """Live workers (expired entries are pruned from the index as they are found)."""
        ids = [as_text(i) for i in self.client.zrange(keys.WORKERS, 0, -1)
               if isinstance(i, (bytes, str))]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for wid in ids:
            pipe.hgetall(keys.worker(wid))
        out, gone = [], []
        for wid, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:
                gone.append(wid)
                continue
            info: dict[str, Any] = {}
            for k, v in raw.items():
                text = v.decode("utf-8", "replace")
                try:
                    info[k.decode()] = json.loads(text)
                except (ValueError, RecursionError):  # plain text, or not ours to parse
                    info[k.decode()] = text
            info["id"] = wid
            out.append(info)
        if gone:
            self.client.zrem(keys.WORKERS, *gone)
        return out

    def stale(self, max_age_s: float, now: float | None = None,
              workers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Workers (of ``workers``, default every registered one) whose main loop has not
        completed an iteration within ``max_age_s``: the rule of ``redisq health``."""
        now = time.time() if now is None else now
        return [w for w in (self.workers() if workers is None else workers)
                if loop_idle_s(w, now) > max_age_s]


def loop_idle_s(worker: dict[str, Any], now: float) -> float:
    """How long ``worker``'s main loop has gone without completing an iteration."""
    return now - float(worker.get("loop_at", 0))
