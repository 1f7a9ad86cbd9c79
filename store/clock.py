"""Where the time comes from.

`TimerService` and `FallbackTimerStore` never read the wall clock: they ask a `Clock`. A pod
passes `SystemClock` for the time of day and `LoopClock` for pacing; the simulator passes each
pod a clock that follows simulated time, with that pod's offset and drift; unit tests pass
`ManualClock` and move it by hand.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of Unix time in seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The host's wall clock (what a production pod uses)."""

    def now(self) -> float:
        return time.time()


class LoopClock:
    """The running event loop's clock: monotonic, for pacing and durations.

    A wall clock can step (NTP, a skewed host); a probe or a hold-back paced by it would move
    with the step. In production it is `time.monotonic()`; in the simulator, simulated time.
    """

    def now(self) -> float:
        return asyncio.get_running_loop().time()


class ManualClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` and return the new time."""
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to `when` (backwards too: clocks do step)."""
        self._now = when
