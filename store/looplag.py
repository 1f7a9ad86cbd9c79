"""Event-loop lag: how late the loop wakes a task that asked to sleep.

Everything a pod does shares one event loop: HTTP requests, the timer runner, the store's Redis
calls. A call that blocks it (a synchronous Redis client inside an async method, a hung socket
without a timeout, a burst of CPU work) delays all of them at once. A ticker that asks to wake
every `period` sees that as lag: the wait took longer than it asked for. Measured here, in the
process itself, because no outside probe can tell a frozen loop from a slow network.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

PERIOD = 0.05
"""Seconds between wake-ups: short enough to see a stall of a tenth of a second."""


@dataclass
class LoopGaps:
    """The wake-ups seen so far."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall time of a wake-up, seconds since the previous one)."""

    def largest(self, since: float = -math.inf, until: float = math.inf) -> float:
        """The longest gap of the wake-ups between `since` and `until` (wall time)."""
        return max((gap for at, gap in self.samples if since <= at < until), default=0.0)


class LoopLag:
    """A ticker on the running loop that reports the worst lag of each `window` seconds.

    `report(worst_lag)` is called once per window (a pod records it in its history, a
    metric exports it). The lag is how much later than asked a wake-up came.
    """

    def __init__(
        self,
        report: Callable[[float], None],
        *,
        period: float = PERIOD,
        window: float = 1.0,
    ) -> None:
        self.report = report
        self.period = period
        self.window = window
        self.worst = 0.0
        """The largest lag seen since the loop lag was started."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        window_end, window_worst = last + self.window, 0.0
        while True:
            await asyncio.sleep(self.period)
            now = loop.time()
            lag = max(0.0, now - last - self.period)
            last = now
            window_worst = max(window_worst, lag)
            self.worst = max(self.worst, lag)
            if now >= window_end:
                self.report(window_worst)
                window_end, window_worst = now + self.window, 0.0


@contextlib.asynccontextmanager
async def watch_loop(period: float = 0.01) -> AsyncIterator[LoopGaps]:
    """Record every wake-up gap of the running loop while the block runs (for tests)."""
    gaps = LoopGaps()

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            gaps.samples.append((time.time(), now - last))
            last = now

    task = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
