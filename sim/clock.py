"""Each simulated pod's own clock: simulated time, plus that pod's offset and drift."""

from __future__ import annotations

import simpy

EPOCH = 1_700_000_000.0
"""Unix time at simulated time 0, so timestamps look like real ones."""


class SimClock:
    """`store.clock.Clock` for one pod: `EPOCH + env.now × (1 + drift) + offset`.

    The offset can step (a clock fault, NTP correcting it) and the rate can drift; the
    simulator knows the truth (`env.now`), the pod only knows this clock.
    """

    def __init__(self, env: simpy.Environment, offset: float = 0.0, drift: float = 0.0) -> None:
        self.env = env
        self.offset = offset
        self.drift = drift

    def now(self) -> float:
        return EPOCH + self.env.now * (1.0 + self.drift) + self.offset

    def error(self) -> float:
        """How far this clock is from the truth right now (seconds, signed)."""
        return self.env.now * self.drift + self.offset
