"""A per-client rate limit: a token bucket per client, refilled continuously."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

PERIOD_S = 3600.0
MAX_TRACKED = 10_000  # beyond this many clients, the least recently seen is forgotten (its bucket refilled most)


def client_key(host: str | None) -> str:
    """Whom a quota counts: an IPv4 address, or an IPv6 address's /64 (one subscriber's allocation, which a
    client could otherwise rotate through). Behind a proxy, uvicorn's FORWARDED_ALLOW_IPS makes `host` the
    forwarded client's address."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    return str(ipaddress.ip_network(f"{address}/64", strict=False)) if address.version == 6 else str(address)


class ClientQuota:
    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_hour)
        self.rate = per_hour / PERIOD_S
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at), oldest first

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self.buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def wait(self, client: str) -> float:
        """0 if `client` may go ahead now, else the seconds until it may."""
        tokens = self._tokens(client, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, client: str) -> None:
        """Count one for `client` (after `wait` said yes; concurrent requests may run it into debt)."""
        now = self.clock()
        tokens = self._tokens(client, now)
        self.buckets.pop(client, None)
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
