"""A baseline of Rasa Pro 3.21's timer manager (scheduling, polling, fallback), for benchmarks.

Reimplemented from the facts in docs/architecture.md, section 7 (not from Rasa's code), and
never used by `store/`. It drives `RasaRedisTimerStore` the way Rasa does, so the claim and
fallback benchmarks measure Rasa's behaviour, flaws included:

- `schedule` is a delete, then a store (2 round trips). Each step is tried 3 times, sleeping
  0.1 s then 0.2 s between tries, before the in-memory fallback takes the call.
- Fallback timers are never moved back to Redis (Rasa's bug, reproduced on purpose). The first
  Redis call that succeeds again deactivates the fallback, and from then on only Redis is
  polled, so whatever the fallback held never fires, and other pods never saw it anyway.
- `poll_once` lists every due timer (no LIMIT), claims each with the tolerant conditional
  delete, and awaits the callback only after the delete: a crash in between loses the expiry.
- On startup everything that expired while down fires at once: `recover` is just `poll_once`,
  with no batching or pacing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
import structlog

from benchmarks.baselines.rasa_store import RasaRedisTimerStore
from store.base import SessionTimerStore
from store.memory import InMemoryTimerStore
from store.timer import SessionTimer

log = structlog.get_logger(__name__)

T = TypeVar("T")

FireCallback = Callable[[str, str | None, float], Awaitable[Any]]
"""`async (sender_id, session_id, scheduled_time)`."""

RETRY_DELAYS = (0.1, 0.2)
"""Sleeps between the 3 tries of one Redis step."""


class RasaTimerManager:
    """Schedules and fires inactivity timers through Redis, with Rasa's in-memory fallback."""

    def __init__(
        self,
        store: RasaRedisTimerStore,
        fire: FireCallback,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fallback = InMemoryTimerStore(origin="fallback")
        self.fallback_active = False
        self._fire = fire
        self._clock = clock

    async def schedule(
        self,
        sender_id: str,
        session_id: str | None,
        timeout_seconds: float,
        metadata: dict[str, Any] | None = None,
    ) -> float:
        """Delete, then store `timeout_seconds` from now; returns the scheduled time."""
        when = self._clock() + timeout_seconds
        await self._call(lambda store: store.delete_timer(sender_id))
        await self._call(lambda store: store.store_timer(sender_id, session_id, when, metadata))
        return when

    async def cancel(self, sender_id: str) -> bool:
        """Unconditional delete, with the same retries and fallback as a schedule step."""
        return await self._call(lambda store: store.delete_timer(sender_id))

    async def poll_once(self, now: float | None = None) -> list[SessionTimer]:
        """Fire every due timer this manager wins; returns the timers it fired.

        Several managers each fetch the whole due set, then race the claims one by one.
        """
        cutoff = self._clock() if now is None else now
        expired = await self._call(lambda store: store.get_expired_timers(cutoff))
        fired = []
        for timer in expired:

            def claim(store: SessionTimerStore, t: SessionTimer = timer) -> Awaitable[bool]:
                return store.delete_timer(t.sender_id, t.scheduled_time)

            if not await self._call(claim):
                continue
            try:
                await self._fire(timer.sender_id, timer.session_id, timer.scheduled_time)
            except Exception as exc:  # the timer is already deleted: this expiry is lost
                log.error("rasa_baseline.fire_failed", sender_id=timer.sender_id, error=str(exc))
            fired.append(timer)
        return fired

    async def recover(self, now: float | None = None) -> list[SessionTimer]:
        """Startup: fire everything that expired while down, all at once (no pacing)."""
        return await self.poll_once(now)

    async def _call(self, step: Callable[[SessionTimerStore], Awaitable[T]]) -> T:
        """Run one step on Redis, 3 tries; on failure run it on the fallback instead.

        A Redis success deactivates the fallback without moving its timers back.
        """
        for delay in (*RETRY_DELAYS, None):
            try:
                result = await step(self.store)
            except redis.exceptions.RedisError as exc:
                if delay is None:
                    if not self.fallback_active:
                        log.warning("rasa_baseline.fallback_activated", error=str(exc))
                        self.fallback_active = True
                    return await step(self.fallback)
                await asyncio.sleep(delay)
                continue
            if self.fallback_active:
                log.info("rasa_baseline.fallback_deactivated")  # its timers stay stranded
                self.fallback_active = False
            return result
        raise AssertionError("unreachable: the last try either returns or falls back")
