"""Weighted queue order for ``redisq worker --queues high:5,default:1``.

Smooth weighted round-robin (the nginx upstream algorithm): each pick adds every queue's
weight to its running credit, takes the queue with the most credit first and charges it the
total. With weights 5 and 1, six consecutive picks put ``high`` first five times and
``default`` once, interleaved (``h h h d h h`` rather than five in a row), and deterministic,
so a test can check the exact sequence. The other queues follow in weight order, so an empty
first choice falls through to a queue that has jobs: a pick never leaves a worker idle while
any of its queues has work, and a queue with weight w is first in w of every ``total`` picks
whatever the other queues hold: nothing starves.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class WeightedOrder:
    """The order in which one reservation tries a worker's queues."""

    def __init__(self, queues: Sequence[str], weights: Sequence[int]) -> None:
        if len(queues) != len(weights) or not queues:
            raise ValueError("one weight per queue, at least one queue")
        if any(w < 1 for w in weights):
            raise ValueError("queue weights are integers >= 1")
        self.queues = list(queues)
        self.weights = list(weights)
        self._total = sum(weights)
        self._credit = [0] * len(queues)
        self._lock = threading.Lock()  # pool threads take through the same consumer
        # Fallback order: heavier first, then as given.
        self._by_weight = sorted(range(len(queues)), key=lambda i: -self.weights[i])

    def next(self) -> list[str]:
        """The queues for the next take, the one whose turn it is first."""
        with self._lock:
            for i, w in enumerate(self.weights):
                self._credit[i] += w
            first = max(range(len(self.queues)), key=lambda i: self._credit[i])
            self._credit[first] -= self._total
        return [self.queues[first], *(self.queues[i] for i in self._by_weight if i != first)]


__all__ = ["WeightedOrder"]
