"""A consumer's blocking moves: BLMOVE from a queue's pending list into the consumer's own
processing list, on the caller's thread (one queue) or one per queue on waiter threads (several
queues: whichever answers first wins, the others keep waiting and are collected later).

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

from ..backend import keys
from ..backend.cluster import is_cluster
from ..backend.connection import CONNECTION_ERRORS
from ..model import as_bytes

Move = Callable[[str, float], "bytes | None"]


def _carries(future: Future[bytes | None]) -> bool:
    """Whether a finished waiter answered with a message (not a timeout, not an error)."""
    return future.exception() is None and future.result() is not None


class Waits:
    def __init__(self, client: redis.Redis, consumer_id: str, threads: int) -> None:
        self.client = client
        self.consumer_id = consumer_id
        self.threads = threads
        self._futures: dict[str, Future[bytes | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._conns: set[Any] = set()  # connections inside a move
        self._interrupted = False
        self._lock = threading.Lock()
        self.woken = threading.Event()  # set by interrupt()

    def move(self, q: str, timeout_s: float) -> bytes | None:
        """One blocking move (None when it timed out, or was interrupted)."""
        src, dst = keys.pending(q), keys.processing(q, self.consumer_id)
        if is_cluster(self.client):  # redis-py follows MOVED/ASK there; not interruptible
            # redis-py types the timeout as int; BLMOVE takes decimal seconds.
            moved = self.client.blmove(src, dst, timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
            return as_bytes(moved) if moved is not None else None
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            with self._lock:
                if self._interrupted:
                    return None
                self._conns.add(conn)
            conn.send_command("BLMOVE", src, dst, "RIGHT", "LEFT", timeout_s)
            return conn.read_response()  # type: ignore[no-any-return]
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

    def collect(self, q: str) -> bytes | None:
        """The answer of ``q``'s waiter (re-raising its error); the waiter is done with."""
        return self._futures.pop(q).result()

    def close(self) -> None:
        """Wait for the waiter threads (at most one move's timeout)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __bool__(self) -> bool:
        return bool(self._futures)
