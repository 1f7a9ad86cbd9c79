"""A minute-long demonstration: arm timers through `TimerService`, let the runner fire them.

It uses the in-memory default store and real time, so it needs no server at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from store import InMemoryTimerStore, SystemClock
from store.options import ServiceSettings
from store.runner import TimerRunner
from store.service import TimerService


async def run_demo(conversations: int, seed: int = 1) -> dict[str, Any]:
    """Arm `conversations` timers of 0.2-1.5 s, fire them all, report lateness."""
    rng = random.Random(seed)
    clock = SystemClock()
    lateness: list[float] = []
    all_fired = asyncio.Event()

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        lateness.append(clock.now() - scheduled_time)
        if len(lateness) == conversations:
            all_fired.set()

    settings = ServiceSettings(poll_interval=0.1)
    service = TimerService(InMemoryTimerStore(), clock, fire, settings=settings)
    runner = TimerRunner(service, rng=rng)
    await runner.start()
    for index in range(conversations):
        await service.schedule_timer(f"user-{index}", "session-1", rng.uniform(0.2, 1.5))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_fired.wait(), 5)
    await runner.stop()
    return {
        "armed": conversations,
        "fired": len(lateness),
        "max_lateness_s": max(lateness, default=0.0),
    }
