"""Watching the event loop for stalls.

A task that asks to wake every `period` records how long each wait really took. A call that
blocks the loop (a sync client, a package-metadata lookup, a hung socket without a timeout)
shows as a gap far beyond the period; this is how the tests prove that a hung Redis never
stalls the loop, and that the baseline's sync client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class LoopGaps:
    """The wake-ups seen so far."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall time of a wake-up, seconds since the previous one)."""

    def largest(self, since: float = -math.inf, until: float = math.inf) -> float:
        """The longest gap of the wake-ups between `since` and `until` (wall time)."""
        return max((gap for at, gap in self.samples if since <= at < until), default=0.0)


@contextlib.asynccontextmanager
async def watch_loop(period: float = 0.01) -> AsyncIterator[LoopGaps]:
    """Record the event loop's wake-up gaps while the block runs."""
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
