"""A simulated pod: the real `TimerService` and store stack, driven by SimPy processes.

Polling is a SimPy process that starts `recover()` and then `poll_once()` as asyncio tasks and
waits for them, sleeping between polls as `store.pacing.PollPacer` says (the same rule the
production runner follows). Messages are handled as tasks too. A crash cancels every task of
the pod mid-await and drops its stores, memory and fallback timers included.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import simpy

from sim.clock import SimClock
from sim.network import PodLink
from store.base import SessionTimerStore
from store.fallback import FallbackTimerStore
from store.pacing import PollPacer
from store.service import PollResult, TimerService

if TYPE_CHECKING:
    from sim.world import World


class CrashNow(BaseException):
    """Raised inside a pod's task to crash it at that exact point (between claim and fire)."""


class SimPod:
    """One pod: its clock, its link to Redis, and (while up) its service and poll loop."""

    def __init__(self, world: World, index: int) -> None:
        self.world = world
        self.index = index
        self.name = f"pod-{index}"
        self.env = world.env
        self.clock = SimClock(world.env)
        self.link = PodLink(
            world.redis,
            world.rng(f"link:{index}"),
            latency=world.spec.latency,
            jitter=world.spec.latency_jitter,
        )
        self.pacer = PollPacer(world.spec.settings, world.rng(f"pacer:{index}"))
        self.alive = False
        self.incarnation = 0
        self.crash_after_claim = False
        self._claimed = False
        self.restart_after: float = 0.0
        self.crash_fault_index = 0
        """The crash-mid-claim fault that armed `crash_after_claim` (its `fault_end` names it)."""
        self.service: TimerService | None = None
        self.store: SessionTimerStore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: simpy.Process | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Boot: fresh stores and service, then recovery and the poll loop.

        Overlapping faults may both restart the pod; the first one boots it.
        """
        if self.alive:
            return
        self.incarnation += 1
        self.store = self.world.build_store(self)
        self.service = TimerService(
            self.store, self.clock, self._fire, settings=self.world.spec.settings, sink=self.sink
        )
        self.alive = True
        self.record(
            "pod_start",
            incarnation=self.incarnation,
            delivery=self.service.delivery,
            fallback=isinstance(self.store, FallbackTimerStore),
        )
        phase = 0.0
        if self.incarnation == 1 and self.world.spec.poll_phase_spread > 0:
            phase = self.world.rng(f"phase:{self.index}").uniform(
                0.0, self.world.spec.poll_phase_spread
            )
        self._poller = self.env.process(self._poll_loop(phase))

    def crash(self, reason: str) -> None:
        """Die now: every in-flight call is abandoned, memory is gone."""
        if not self.alive:
            return
        self.alive = False
        self.crash_after_claim = self._claimed = False
        lost = self._fallback_instances()
        self.record("pod_crash", reason=reason, fallback_lost=lost, incarnation=self.incarnation)
        for task in list(self._tasks):
            task.cancel()
        if (
            self._poller is not None
            and self._poller.is_alive
            and self._poller is not self.env.active_process
        ):
            self._poller.interrupt("crash")
        self.service = None
        self.store = None

    def stop(self) -> None:
        """End of run: stop polling without recording a crash."""
        self.alive = False
        for task in list(self._tasks):
            task.cancel()
        if self._poller is not None and self._poller.is_alive:
            self._poller.interrupt("stop")

    # -- work -------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any]) -> simpy.Event:
        """Start a coroutine of this pod as a task; the SimPy event fires when it ends."""
        event = self.world.bridge.run(coro)
        task: asyncio.Task[Any] = event.task  # type: ignore[attr-defined]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return event

    def handle_message(self, sender_id: str, session_id: str, timeout: float) -> simpy.Event:
        assert self.service is not None
        # The service arms `now + timeout` on this clock, at this instant: recorded here too,
        # so a write whose outcome the pod never learns (it crashed) can still be recognised.
        self.record(
            "message",
            sender_id=sender_id,
            session_id=session_id,
            timeout=timeout,
            scheduled_time=self.clock.now() + timeout,
        )
        return self.run(self.service.schedule_timer(sender_id, session_id, timeout))

    def handle_end(self, sender_id: str) -> simpy.Event:
        assert self.service is not None
        self.record("message", sender_id=sender_id, end=True)
        return self.run(self.service.cancel_timer(sender_id))

    def _poll_loop(self, phase: float) -> Any:
        if phase:
            try:
                yield self.env.timeout(phase)
            except simpy.Interrupt:
                return
        recovering = True
        while self.alive and self.service is not None:
            call = self.service.recover() if recovering else self.service.poll_once()
            self.world.poll_started()
            result: PollResult | None = None
            try:
                result = yield self.run(call)
            except simpy.Interrupt:
                return
            except asyncio.CancelledError:
                return
            except CrashNow:
                self.world.crash_and_restart(self, "crash_mid_claim")
                return
            except Exception:  # the loop never dies on store errors, as in production
                result = None
            if recovering and (result is None or result.remaining_due == 0):
                recovering = False
            try:
                yield self.env.timeout(self._next_delay(result))
            except simpy.Interrupt:
                return

    def _next_delay(self, result: PollResult | None) -> float:
        """The production pacing rule; in racing mode, every pod polls on the same grid."""
        if not self.world.spec.workload.racing:
            return self.pacer.next_delay(result)
        interval = self.world.spec.settings.poll_interval
        return interval - (self.env.now % interval) or interval

    async def _fire(
        self, sender_id: str, session_id: str | None, scheduled_time: float, fire_id: str
    ) -> None:
        """The conversation-inactive action: takes a little time, then succeeds."""
        await asyncio.sleep(self.world.spec.fire_duration)

    # -- recording --------------------------------------------------------------------------

    def sink(self, kind: str, /, **fields: Any) -> None:
        """Where this pod's store and service report; also the crash-mid-claim trigger.

        Armed by a crash-mid-claim fault, the pod dies at the first callback after a claim:
        every claim of that batch is recorded (the store leased them all), no callback runs.
        """
        if kind == "fire" and self.crash_after_claim and self._claimed:
            raise CrashNow
        self.record(kind, **fields)
        if kind == "claim" and self.crash_after_claim:
            self._claimed = True

    def record(self, kind: str, **fields: Any) -> None:
        self.world.history.record(self.env.now, self.clock.now(), self.name, kind, **fields)

    def _fallback_instances(self) -> list[str]:
        store = self.store
        if isinstance(store, FallbackTimerStore):
            return store.fallback_instances()
        return []


def seeded(world_seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream for one purpose (str seeds hash stably)."""
    return random.Random(f"{world_seed}:{purpose}")
