"""Each simulated pod's own clock: simulated time, plus the errors its clock faults put in."""

from __future__ import annotations

from dataclasses import dataclass

import simpy

EPOCH = 1_700_000_000.0
"""Unix time at simulated time 0, so timestamps look like real ones."""


@dataclass(frozen=True)
class _Skew:
    offset: float
    drift: float
    since: float


class SimClock:
    """`store.clock.Clock` for one pod: `EPOCH + env.now + error`.

    Each clock fault steps the clock by its offset and from then on lets it drift at its
    rate; when the fault ends, its step and the drift it accumulated are taken back (NTP
    corrects the clock). Overlapping faults add up and each undoes only itself, so the error
    never exceeds the sum of the offsets plus `|drift| × duration` per fault: the early-fire
    tolerance `FaultPlan.max_skew` is made of exactly these terms. The simulator knows the
    truth (`env.now`); the pod only knows this clock.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._skews: dict[int, _Skew] = {}

    def now(self) -> float:
        return EPOCH + self.env.now + self.error()

    def error(self) -> float:
        """How far this clock is from the truth right now (seconds, signed)."""
        now = self.env.now
        return sum(s.offset + s.drift * (now - s.since) for s in self._skews.values())

    def skew(self, fault: int, offset: float, drift: float) -> None:
        """Fault `fault` begins: step by `offset`, then drift at `drift` seconds per second."""
        self._skews[fault] = _Skew(offset, drift, self.env.now)

    def unskew(self, fault: int) -> None:
        """Fault `fault` ends: its step and its drift so far are corrected."""
        self._skews.pop(fault, None)
