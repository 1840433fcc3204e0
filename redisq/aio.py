"""The producer API for asyncio programs (aiohttp, FastAPI, Starlette).

>>> producer = AsyncProducer(app)            # the same App: tasks, serializer, URL
>>> job = await producer.enqueue("pkg.tasks.rebuild_index", args=(42,))
>>> await job.result(timeout_s=30)
>>> jobs = await producer.enqueue_many("pkg.tasks.send_mail", calls, concurrency=50)
>>> await producer.publish("events", {"kind": "created"})

Messages, records and Lua steps are exactly those of the synchronous :class:`redisq.App`, so
asyncio producers and threaded workers interoperate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry as RedisRetry

from .app import App
from .backend import finished, keys
from .backend.backoff import doubling
from .backend.cluster import sharded_pubsub
from .backend.connection import NO_SETINFO, client_name
from .backend.index import ProducerIndex
from .backend.scripts import source
from .backend.urls import (
    ConnectionOptions,
    redact,
    sentinel_target,
    sentinel_tls,
    split_tls_query,
    tls_kwargs,
    url_hosts,
)
from .broker.channel import CLASSIC_CHANNELS
from .errors import ConfigError, NotReplicated
from .job import RESULT_FIRST_POLL_S, final_result, still_running
from .producer import delay_from
from .tasks import split_call


class AsyncJob:
    """An asyncio handle on a job."""

    def __init__(self, producer: AsyncProducer, job_id: str, queue: str, created: bool = True):
        self._producer = producer
        self.id = job_id
        self.queue = queue
        self.created = created

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id} queue={self.queue}>"

    async def info(self) -> dict[str, Any]:
        """The whole record (empty once it expired or if it never existed), read as
        :meth:`Job.info` reads it (``lua/record.lua``)."""
        ks, argv = finished.read_call(self.queue, self.id)
        reply = await self._producer._record(keys=ks, args=argv)
        return finished.record_from_reply(reply, self.queue, self.id)

    async def status(self) -> str | None:
        status: str | None = (await self.info()).get("status")
        return status

    async def result(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
        """Wait for the job to end; raises JobFailed / JobTimeout like :meth:`Job.result`."""
        deadline = time.monotonic() + timeout_s
        delays = doubling(RESULT_FIRST_POLL_S, poll_s)
        while True:
            info = await self.info()
            done, value = final_result(self.id, info)
            if done:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise still_running(self.id, info, timeout_s)
            await asyncio.sleep(min(next(delays), remaining))


def async_client(url: str, opts: ConnectionOptions, max_connections: int) -> aioredis.Redis:
    """A ``redis.asyncio`` client with redisq's rules (deadlines, no hidden retries, a name)
    for ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` and
    ``redis+cluster://`` URLs. Through Sentinel every new connection asks for the current
    master, and a connection to a demoted master (READONLY) is dropped, so a producer follows
    a failover by retrying; on a cluster each command goes to the node of its key."""
    common: dict[str, Any] = {
        "socket_timeout": opts.socket_timeout_s, "socket_connect_timeout": opts.connect_timeout_s,
        "retry": RedisRetry(NoBackoff(), 0), "client_name": client_name("aio-producer"),
        "max_connections": max_connections, **NO_SETINFO}
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    # The same TLS options as connect() (hostname checking on unless the URL says otherwise).
    tls = ({"ssl": True, **tls_kwargs(opts, parse_qs(parsed.query), redact(url))}
           if scheme.startswith("rediss") and scheme != "rediss" else {})
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        from redis.asyncio.sentinel import Sentinel

        target = sentinel_target(parsed)
        # The sentinels are asked with a short deadline, over TLS for rediss+sentinel:// (as
        # connect()); the master's connections get everything else.
        sentinel = Sentinel(target.hosts, sentinel_kwargs={
            "socket_timeout": opts.connect_timeout_s, **sentinel_tls(parsed, opts)}, **tls)
        master: aioredis.Redis = sentinel.master_for(
            target.service, db=target.db, username=target.username, password=target.password,
            **common)
        return master
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in url_hosts(parsed, 6379)]
        del common["retry"]  # the cluster client's own retries follow MOVED/ASK replies
        # A cluster client stands in for a Redis one (the commands redisq sends are the same),
        # as connect() does for the sync client.
        return RedisCluster(  # type: ignore[return-value]
            startup_nodes=nodes, require_full_coverage=False, **common, **tls,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None)
    if scheme == "rediss":
        base, query = split_tls_query(url)
        return aioredis.Redis.from_url(base, **common, **tls_kwargs(opts, query, redact(url)))
    return aioredis.Redis.from_url(url, **common)


class AsyncProducer:
    """Enqueue and publish from asyncio code through one ``redis.asyncio`` client."""

    def __init__(self, app: App, max_connections: int = 50) -> None:
        if app.eager:  # it would send the jobs to Redis: not what a test of an eager App means
            raise ConfigError("AsyncProducer has no eager mode (App(eager=True) or "
                              "REDISQ_EAGER): call the tasks' delay() in the test, or test on "
                              "fakeredis with redisq.testing (docs/testing.md)")
        self.app = app
        self._cluster = urlparse(app.url).scheme.endswith("+cluster")
        if self._cluster and app.wait_replicas:
            raise ConfigError("AsyncProducer: durable enqueue (wait_replicas) on Redis Cluster "
                              "is not supported; use App's synchronous API for it")
        self.client: aioredis.Redis = async_client(app.url, app.options, max_connections)
        self._sharded: bool | None = None  # decided at the first publish on a cluster
        self._enqueue = self.client.register_script(source("enqueue"))
        self._record = self.client.register_script(source("record"))
        self._publish_durable = self.client.register_script(source("publish_durable"))
        self._index = ProducerIndex(None)  # when to register; the writes are async, below

    async def enqueue(self, task_name: str, args: Sequence[Any] = (),
                      kwargs: dict[str, Any] | None = None, *, queue: str | None = None,
                      delay_s: float | None = None, job_id: str | None = None,
                      eta: datetime | float | None = None,
                      options: Mapping[str, Any] | None = None) -> AsyncJob:
        """Queue a call (one round trip); same rules, per-call ``options`` and middleware as
        :meth:`App.enqueue` (its ``after_enqueue`` sees the synchronous :class:`Job`)."""
        delay_s = delay_from(delay_s, eta)
        prepared = self.app.prepare(task_name, args, kwargs, queue, job_id, options, delay_s)
        q = prepared.env.queue
        if self._index.due(q):  # see redisq.index: on a queue's first write, then now and then
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.sadd(keys.QUEUES, q)
                pipe.zadd(keys.QUEUES_SEEN, {q: time.time()})
                await pipe.execute()
        _, ks, argv = self.app.records.enqueue_call(prepared.env, prepared.message, delay_s,
                                                    prepared.unique_ttl_s, prepared.fresh_id)
        if self.app.wait_replicas:
            created, jid = await self._enqueue_replicated(ks, argv)
        else:
            created, jid = await self._enqueue(keys=ks, args=argv)
        sync_job = self.app.finish_enqueue(prepared, bool(created), jid)  # duplicate rule
        return AsyncJob(self, sync_job.id, q, sync_job.created)

    async def _enqueue_replicated(self, ks: list[str], argv: list[Any]) -> Any:
        """Durable enqueue (``App(wait_replicas=N)``): the script and ``WAIT`` pipelined on one
        connection (WAIT counts that connection's writes), one round trip; raises
        :class:`NotReplicated` when fewer than N replicas confirm in time."""
        replicas, timeout_s = self.app.wait_replicas, self.app.wait_timeout_s
        for first_try in (True, False):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._enqueue.sha, len(ks), *ks, *argv)
                pipe.wait(replicas, max(int(timeout_s * 1000), 1))
                res, acked = await pipe.execute(raise_on_error=False)
            if isinstance(res, NoScriptError) and first_try:  # it did not run: load, again
                await self.client.script_load(self._enqueue.script)
                continue
            for reply in (res, acked):
                if isinstance(reply, Exception):
                    raise reply
            if int(acked) < replicas:
                raise NotReplicated(f"{acked} of {replicas} replica(s) confirmed within "
                                    f"{timeout_s} s")
            return res
        raise AssertionError("unreachable")  # pragma: no cover

    async def enqueue_many(self, task_name: str, calls: Iterable[Any],
                           concurrency: int = 50, queue: str | None = None,
                           options: Mapping[str, Any] | None = None) -> list[AsyncJob]:
        """Queue many calls with at most ``concurrency`` in flight at once (bounded, so a bulk
        send cannot open thousands of connections or starve the event loop)."""
        if options and "job_id" in options:
            raise TypeError("enqueue_many queues many jobs: a job_id option cannot apply to all")
        gate = asyncio.Semaphore(concurrency)

        async def one(call: Any) -> AsyncJob:
            args, kwargs = split_call(call)
            async with gate:
                return await self.enqueue(task_name, args, kwargs, queue=queue, options=options)

        return list(await asyncio.gather(*(one(c) for c in calls)))

    async def publish(self, channel: str, message: Any, durable: bool | None = None) -> int:
        """As :meth:`App.publish` (on a sharded cluster: SPUBLISH, as :class:`Channel`)."""
        is_durable = channel in self.app.durable_channels if durable is None else durable
        data = self.app.encode_message(message)
        keys.check_name(channel, "channel")
        sharded = await self._is_sharded(channel)
        if not is_durable:
            send = self.client.spublish if sharded else self.client.publish
            return int(await send(channel, data))
        args: list[Any] = [channel, data, 10_000, *(["S"] if sharded else [])]
        _, receivers = await self._publish_durable(keys=[keys.stream(channel)], args=args)
        return int(receivers)

    async def _is_sharded(self, channel: str) -> bool:
        """The same decision as the synchronous side (:func:`redisq.backend.cluster.sharded_pubsub`:
        the URL's option, else the masters' versions), made once, off the event loop."""
        if not self._cluster or channel in CLASSIC_CHANNELS:
            return False
        if self._sharded is None:
            self._sharded = await asyncio.to_thread(sharded_pubsub, self.app.client)
        return self._sharded

    def job(self, job_id: str, queue: str) -> AsyncJob:
        return AsyncJob(self, job_id, queue)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
