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
    if address.version == 6 and address.ipv4_mapped:  # an IPv4 client of a dual-stack listener
        return str(address.ipv4_mapped)
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

    def take(self, client: str) -> float:
        """0 if `client` may go ahead (and one is counted for it), else the seconds until it may."""
        now = self.clock()
        tokens = self._tokens(client, now)
        if tokens < 1:
            return (1 - tokens) / self.rate
        self._set(client, tokens - 1, now)
        return 0.0

    def refund(self, client: str) -> None:
        """Give back what `take` counted, for a request that did not go through."""
        now = self.clock()
        self._set(client, min(self.capacity, self._tokens(client, now) + 1), now)

    def _set(self, client: str, tokens: float, now: float) -> None:
        self.buckets.pop(client, None)
        self.buckets[client] = (tokens, now)
        if len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
