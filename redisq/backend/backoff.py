"""Capped exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive failures: ``uniform(0, min(cap_s, base_s * 2**n))``.

    Full jitter spreads a herd of workers that lost Redis at the same moment, so they do not
    reconnect in lock-step when it comes back.
    """

    base_s: float = 0.05
    cap_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay_s(self) -> float:
        """Return the delay before the next attempt and count this failure."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.failures, 32)))
        self.failures += 1
        return self.rng.uniform(self.base_s / 2, max(ceiling, self.base_s))

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0


def doubling(first_s: float, cap_s: float) -> Iterator[float]:
    """The waits of a poll loop: ``first_s``, doubling up to ``cap_s``. No jitter: one caller
    polls for one thing, there is no herd to spread."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


def retry_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based) of a failed job: jittered exponential."""
    uniform = rng.uniform if rng is not None else random.uniform
    ceiling = min(cap_s, base_s * (2 ** max(attempt - 1, 0)))
    return uniform(ceiling / 2, ceiling)
