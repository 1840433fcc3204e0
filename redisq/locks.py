"""A lease-based distributed mutex: ``with app.lock("project:7", ttl_s=30): ...``.

The lock is a key holding a random token with a TTL. A holder that crashes cannot keep it: the
lease ends ``ttl_s`` after its last renewal. While the ``with`` block runs, a background thread
renews the lease every ``ttl_s / 3``; release and renewal check the token in one Lua step, so a
holder whose lease already ran out never frees the next holder's lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType

import redis

from .backend import keys
from .backend.backoff import doubling
from .backend.scripts import Scripts
from .errors import LockNotAcquired

log = logging.getLogger("redisq.locks")


class Lock:
    """A distributed lock; see the module docstring."""

    def __init__(self, client: redis.Redis, name: str, ttl_s: float = 30.0,
                 wait_s: float | None = None, auto_renew: bool = True,
                 scripts: Scripts | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.client = client
        self.name = name
        self.key = keys.lock(name)
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.auto_renew = auto_renew
        self.scripts = scripts or Scripts(client)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, wait_s: float | None = None) -> bool:
        """Take the lock; wait up to ``wait_s`` (None: the constructor's; 0: do not wait)."""
        wait_s = self.wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + (wait_s or 0.0)
        delays = doubling(0.005, 0.1)
        while True:
            if self.client.set(self.key, self.token, nx=True, px=int(self.ttl_s * 1000)):
                self._start_renewing()
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(next(delays), max(deadline - time.monotonic(), 0)))

    def extend(self) -> bool:
        """Renew the lease; False if the lock is no longer ours."""
        return bool(self.scripts.run("lock_extend", [self.key],
                                     [self.token, int(self.ttl_s * 1000)]))

    def release(self) -> bool:
        """Free the lock; False if it was no longer ours (the lease had run out)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        return bool(self.scripts.run("lock_release", [self.key], [self.token]))

    def locked(self) -> bool:
        return bool(self.client.exists(self.key))

    def _start_renewing(self) -> None:
        if not self.auto_renew:
            return
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                         name=f"redisq-lock-{self.name}")
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.extend():
                    log.warning("lock %s: lease lost before release", self.name)
                    return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("lock %s: could not renew (%s); retrying", self.name, exc)

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockNotAcquired(f"lock {self.name!r} is held by another holder")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.release():
            log.warning("lock %s: lease had expired before release", self.name)
