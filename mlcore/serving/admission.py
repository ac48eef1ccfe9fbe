"""How many request and response bytes the server holds at once. A body is charged its whole size when its
first byte arrives (an idle connection holds nothing, and two bodies never each hold half of what both need),
a response from when it is built until it is sent; when the budget is spent, requests wait their turn (first
come, first served). Memory stays bounded however many clients send at once or stop reading."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class ByteBudget:
    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()

    async def take(self, size: int) -> int:
        """Hold `size` bytes (at most the total), waiting behind earlier requests; returns what was taken."""
        size = min(size, self.total)
        if not self._waiting and self.free >= size:
            self.free -= size
            return size
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((size, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give(size)  # granted just as it was cancelled
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiting.remove((size, turn))
                self._wake()
            raise
        return size

    def give(self, size: int) -> None:
        """Return bytes taken (synchronous, so a cancelled request can never leak its share)."""
        self.free += size
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, turn = self._waiting.popleft()
            if not turn.done():
                self.free -= size
                turn.set_result(None)
