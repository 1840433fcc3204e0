"""Where a job record lives, for tests that check its TTL (its own key, or a done bucket:
see redisq/backend/finished.py)."""

from __future__ import annotations

import redis

from redisq.backend import keys


def bucket_of(client: redis.Redis, queue: str, job_id: str) -> str | None:
    """The done bucket holding ``job_id``'s finished record, or None."""
    for end in client.zrange(keys.done(queue), 0, -1):
        bucket = keys.done_bucket(queue, int(end))
        if client.hexists(bucket, job_id):
            return bucket
    return None


def job_ids_in(client: redis.Redis, bucket: str) -> list[str]:
    """The job ids a done bucket holds records of (not its task and worker names, whose
    fields start with \x01)."""
    return sorted(f.decode() for f in client.hkeys(bucket) if not f.startswith(b"\x01"))


def record_ttl_s(client: redis.Redis, queue: str, job_id: str) -> float:
    """Seconds the record has left: its key's TTL, or its done bucket's (-2: no record)."""
    if client.exists(keys.job(queue, job_id)):
        return client.pttl(keys.job(queue, job_id)) / 1000
    bucket = bucket_of(client, queue, job_id)
    return -2.0 if bucket is None else client.pttl(bucket) / 1000
