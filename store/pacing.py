"""When to poll next: the one pacing rule both drivers (asyncio runner, simulator) follow.

Normal polls are `poll_interval` apart with jitter, so pods drift out of lock step and do not
hit Redis in bursts. While a poll leaves due timers behind (a backlog after an outage or a
restart), the next poll comes as soon as `recovery_rate` allows, so the backlog drains fast
but never as a stampede.
"""

from __future__ import annotations

import random
from typing import Protocol

from store.options import ServiceSettings
from store.service import PollResult


class Pacer(Protocol):
    """What `TimerRunner` asks before each sleep: how long until the next poll."""

    def next_delay(self, last: PollResult | None) -> float:
        """Seconds to wait after a poll that returned `last` (None: the poll failed)."""
        ...


class PollPacer:
    """Turns the last poll's result into the delay before the next one."""

    def __init__(self, settings: ServiceSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()

    def next_delay(self, last: PollResult | None) -> float:
        """Seconds to wait after a poll that returned `last` (None: the poll failed)."""
        if last is not None and last.remaining_due > 0:
            return self.backlog_delay(len(last.fired))
        return self.interval()

    def backlog_delay(self, fired: int) -> float:
        """After a poll that fired `fired` timers and left more due: the backlog drains at
        `recovery_rate`, never as a stampede."""
        return max(fired, 1) / self.settings.recovery_rate

    def interval(self) -> float:
        """One jittered poll interval."""
        jitter = self.settings.poll_jitter
        return self.settings.poll_interval * (1.0 + self._rng.uniform(-jitter, jitter))
