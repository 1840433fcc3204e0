"""A consumer's blocking moves: BLMOVE from a queue's pending list into the consumer's own
processing list, on the caller's thread (one queue) or one per queue on waiter threads (several
queues: whichever answers first wins, the others keep waiting and are collected later).

A worker's moves *claim* (see ``lua/reserve.lua``): the BLMOVE goes into the consumer's inbox
and the reserve step is pipelined right behind it, so the server marks the job started (and
checks the consumer's epoch) the moment the message arrives, and the reply carries both. The
idle path to a job's start is one round trip, as a batch reservation's is.

Each move runs on a connection held for it alone, so that :meth:`Waits.interrupt` (a stopping
worker) can end it at once: it shuts the socket down and the move returns as if it had timed
out. A message that the server moved just before stays in the processing list, which the
consumer gives back when it closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import redis
from redis.exceptions import NoScriptError

from ..backend import keys
from ..backend.cluster import is_cluster
from ..backend.connection import CONNECTION_ERRORS
from ..backend.scripts import Scripts
from ..model import as_bytes

#: A move brings None (nothing: it timed out, was interrupted, or the claim gave the
#: message back), -1 (claim: the consumer's epoch ended; the message went back), the message
#: (a plain move: ``[body]``) or the claim's answer (message, status-before pairs).
Move = Callable[[str, float], "list[bytes] | int | None"]
#: A script call pipelined behind a move: (name, keys, args), as Scripts.run_many takes.
Claim = tuple[str, list[str], list[Any]]


def _carries(future: Future[list[bytes] | int | None]) -> bool:
    """Whether a finished waiter answered with a message (not a timeout, not an error)."""
    return future.exception() is None and isinstance(future.result(), list)


class Waits:
    def __init__(self, client: redis.Redis, consumer_id: str, threads: int,
                 scripts: Scripts | None = None) -> None:
        self.client = client
        self.scripts = scripts
        self.consumer_id = consumer_id
        self.threads = threads
        self._futures: dict[str, Future[list[bytes] | int | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._conns: set[Any] = set()  # connections inside a move
        self._interrupted = False
        self._lock = threading.Lock()
        self.woken = threading.Event()  # set by interrupt()

    def move(self, q: str, timeout_s: float, claim: Claim | None = None) -> list[bytes] | int | None:
        """One blocking move, then ``claim`` (a reserve step from the inbox) in the same
        round trip; see :data:`Move` for the answer."""
        if claim is not None:
            src, dst = keys.pending(q), keys.inbox(q, self.consumer_id)
        else:
            src, dst = keys.pending(q), keys.processing(q, self.consumer_id)
        if is_cluster(self.client):  # redis-py follows MOVED/ASK there; not interruptible
            # redis-py types the timeout as int; BLMOVE takes decimal seconds. (No claim on
            # a cluster: the consumer marks what it moved with a step of its own.)
            moved = self.client.blmove(src, dst, timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
            return [as_bytes(moved)] if moved is not None else None
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            with self._lock:
                if self._interrupted:
                    return None
                self._conns.add(conn)
            if claim is None:
                conn.send_command("BLMOVE", src, dst, "RIGHT", "LEFT", timeout_s)
                body = conn.read_response()
                return [body] if body is not None else None
            return self._claimed(conn, src, dst, timeout_s, claim)
        except CONNECTION_ERRORS:
            conn.disconnect()
            if self._interrupted:
                return None  # our own interrupt: a wait that ended early, not an outage
            raise
        except BaseException:
            conn.disconnect()  # a reply may be left unread: never reuse this connection
            raise
        finally:
            with self._lock:
                self._conns.discard(conn)
            pool.release(conn)

    def _claimed(self, conn: Any, src: str, dst: str, timeout_s: float,
                 claim: Claim) -> list[bytes] | int | None:
        assert self.scripts is not None, "a claim needs the consumer's scripts"
        name, ks, args = claim
        conn.send_packed_command(conn.pack_commands([
            ("BLMOVE", src, dst, "RIGHT", "LEFT", timeout_s),
            ("EVALSHA", self.scripts.sha(name), len(ks), *ks, *args)]))
        conn.read_response()  # the body (or nil): the claim's answer says what became of it
        try:
            answer = conn.read_response()
        except NoScriptError:  # the script cache was flushed: load it, claim again
            answer = self.scripts.run(name, ks, args)
        if isinstance(answer, int):
            return answer
        return answer or None

    def interrupt(self) -> None:
        """End every move now (from another thread); later ones return at once. (On Redis
        Cluster moves are not interrupted: they end within their timeout.)"""
        with self._lock:
            self._interrupted = True
            conns = list(self._conns)
        self.woken.set()
        for conn in conns:
            sock = conn._sock
            if sock is not None:
                with contextlib.suppress(OSError):  # the blocked recv now reads EOF
                    sock.shutdown(socket.SHUT_RDWR)

    # -- waiter threads ----------------------------------------------------------------------
    def start(self, q: str, timeout_s: float, move: Move) -> None:
        """``move(q, timeout_s)`` on a waiter thread, unless one waits on ``q`` already."""
        if q in self._futures:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="redisq-wait")
        self._futures[q] = self._pool.submit(move, q, timeout_s)

    def background(self, fn: Callable[..., object], *args: object) -> None:
        """``fn(*args)`` on a waiter thread, untracked (probes of resting queues)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="redisq-wait")
        self._pool.submit(fn, *args)

    def waiting(self, q: str) -> bool:
        """Whether a blocking move on ``q`` is out (its message, if any, is not collected yet)."""
        return q in self._futures

    def busy(self) -> bool:
        """Whether a waiter is between moving a message and having it collected: still in its
        move (the server may have moved one already), or answered with a message that is not
        collected yet. Either message is in our processing list and not handed out: it must
        not pass for an orphan, or it would run twice (once as the orphan, once collected)."""
        return any(not f.done() or _carries(f) for f in self._futures.values())

    def wait_any(self, timeout_s: float) -> None:
        """Until a waiter answers (or ``timeout_s``; or an interrupt when none waits)."""
        if self._futures:
            wait(list(self._futures.values()), timeout=timeout_s, return_when=FIRST_COMPLETED)
        else:
            self.woken.wait(timeout_s)

    def answered(self) -> list[str]:
        """Queues whose waiter has answered, in the order they were started."""
        return [q for q, f in self._futures.items() if f.done()]

    def collect(self, q: str) -> list[bytes] | int | None:
        """The answer of ``q``'s waiter (re-raising its error); the waiter is done with."""
        return self._futures.pop(q).result()

    def close(self) -> None:
        """Wait for the waiter threads (at most one move's timeout)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __bool__(self) -> bool:
        return bool(self._futures)
