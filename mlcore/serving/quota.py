"""A per-client rate limit: a token bucket per client address, refilled continuously."""

from __future__ import annotations

import time
from collections.abc import Callable

PERIOD_S = 3600.0
MAX_TRACKED = 10_000  # beyond this many addresses, the ones with a full bucket are forgotten


class ClientQuota:
    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_hour)
        self.rate = per_hour / PERIOD_S
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self.buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def take(self, client: str) -> float:
        """0 if `client` may go ahead (and counts it), else the seconds until it may."""
        now = self.clock()
        tokens = self._tokens(client, now)
        if tokens < 1:
            return (1 - tokens) / self.rate
        if len(self.buckets) >= MAX_TRACKED:
            self.buckets = {c: b for c, b in self.buckets.items() if self._tokens(c, now) < self.capacity}
        self.buckets[client] = (tokens - 1, now)
        return 0.0
