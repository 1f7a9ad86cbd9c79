"""`TimerRunner`: drives a `TimerService` with real time inside a pod's event loop.

It owns what the sans-I/O service must not: sleeping between polls, staying alive through
store errors, pacing the start-up recovery, and stopping gracefully (in-flight fires finish,
nothing new is claimed, the fallback merges back before the process exits).

Every duration it measures comes from the event loop's clock, so the simulator runs this very
loop in simulated time (with its own `Pacer` for lock-step polling): there is one poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from typing import Any

import structlog

from store.clock import Clock, SystemClock
from store.endpoint import EndpointConfig
from store.events import EventSink, null_sink
from store.factory import create_timer_store
from store.fallback import FallbackTimerStore
from store.options import ServiceSettings
from store.pacing import Pacer, PollPacer
from store.redis import RedisTimerStore
from store.service import FireCallback, PollResult, TimerService

log = structlog.get_logger(__name__)


class ErrorLog:
    """Logs a repeating error once per `interval` seconds, with how many were suppressed.

    A Redis outage makes every poll fail; one line per poll would drown the log.
    """

    def __init__(self, event: str, interval: float = 30.0) -> None:
        self.event = event
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def error(self, exc: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        log.error(self.event, error=f"{type(exc).__name__}: {exc}", suppressed=self._suppressed)
        self._last, self._suppressed = now, 0


class TimerRunner:
    """Start-up recovery, then a jittered poll loop, until `stop()`."""

    def __init__(
        self,
        service: TimerService,
        *,
        rng: random.Random | None = None,
        pacer: Pacer | None = None,
        error_log_interval: float = 30.0,
    ) -> None:
        self.service = service
        self.pacer = pacer or PollPacer(service.settings, rng)
        self.last_result: PollResult | None = None
        self.polls = 0
        self.recovered = 0
        self._errors = ErrorLog("timer_store.runner.poll_failed", error_log_interval)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Check the store, then run recovery and the poll loop in a background task."""
        store = self.service.store
        primary = store.primary if isinstance(store, FallbackTimerStore) else store
        if isinstance(primary, RedisTimerStore):
            try:
                await primary.check()
            except ConnectionError as exc:  # the fallback covers it; say so once
                log.warning("timer_store.runner.store_unreachable_at_start", error=str(exc))
        self._task = asyncio.create_task(self._run(), name="timer-runner")

    async def stop(self) -> None:
        """Finish the poll in progress (its fires included), claim nothing new, merge back."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        store = self.service.store
        if isinstance(store, FallbackTimerStore):
            await store.drain()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not self._stopping:
            self.last_result = await self._poll(recovering=True)
            if self.last_result is None or self.last_result.remaining_due == 0:
                break
            await self._sleep(self.pacer.next_delay(self.last_result))
        (log.info if self.recovered else log.debug)(
            "timer_store.runner.recovered",
            fired=self.recovered,
            seconds=round(loop.time() - started, 3),
        )
        while not self._stopping:
            await self._sleep(self.pacer.next_delay(self.last_result))
            if not self._stopping:  # stop() during the sleep: claim nothing new
                self.last_result = await self._poll(recovering=False)

    async def _poll(self, *, recovering: bool) -> PollResult | None:
        try:
            result = await (self.service.recover() if recovering else self.service.poll_once())
        except Exception as exc:  # the loop must survive anything the store throws
            self._errors.error(exc)
            return None
        self.polls += 1
        if recovering:
            self.recovered += len(result.fired)
        return result

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


def build_runner(
    config: EndpointConfig | Mapping[str, Any] | None,
    fire: FireCallback,
    *,
    clock: Clock | None = None,
    sink: EventSink = null_sink,
    rng: random.Random | None = None,
) -> TimerRunner:
    """Store, service and runner from one `timer_store` section: what a pod needs."""
    store = create_timer_store(config)
    section: Mapping[str, Any] = (
        config.as_dict() if isinstance(config, EndpointConfig) else dict(config or {})
    )
    settings = ServiceSettings.from_mapping(section)
    for part in (store, getattr(store, "primary", None)):
        if part is not None and hasattr(part, "sink"):
            part.sink = sink
    service = TimerService(store, clock or SystemClock(), fire, settings=settings, sink=sink)
    return TimerRunner(service, rng=rng)
