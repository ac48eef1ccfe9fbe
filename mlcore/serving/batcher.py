"""Dynamic batching: concurrent requests share one model call.

The model runs on one thread, one batch at a time. While it runs, new requests queue; when it returns, the
queue becomes the next batch (up to `max_batch` images; a larger request is split). A request arriving at an
idle model waits `max_delay_s` for company first. This is Triton's dynamic batcher in miniature: with many
clients the model runs batches of several images instead of one call each, which on a CPU is several times
the throughput (bench/serving_load.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_delay_s: float,
        observe: Callable[[int], None] = lambda size: None,
    ):
        self._predict = predict
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._observe = observe
        self._pending: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._runner: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """The model's output for `images` [n, ...], computed in batches with whatever else is queued."""
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(images), self._max_batch):
            futures.append(loop.create_future())
            self._pending.append((images[start : start + self._max_batch], futures[-1]))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return np.concatenate(await asyncio.gather(*futures))

    def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        group = [self._pending.popleft()]
        size = len(group[0][0])
        while self._pending and size + len(self._pending[0][0]) <= self._max_batch:
            size += len(self._pending[0][0])
            group.append(self._pending.popleft())
        return group

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self._max_delay_s)
        while self._pending:
            # a future is done already if its request was cancelled (a client gone, the server stopping)
            group = [(images, future) for images, future in self._next_batch() if not future.done()]
            if not group:
                continue
            batch = np.concatenate([images for images, _ in group])
            self._observe(len(batch))
            try:
                outputs = await loop.run_in_executor(self._thread, self._predict, batch)
            except Exception as exc:  # the model failed: every request of the batch gets the error (a 500)
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for images, future in group:
                if not future.done():
                    future.set_result(outputs[offset : offset + len(images)])
                offset += len(images)
