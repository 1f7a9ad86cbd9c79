"""A simulated pod: the real store stack, `TimerService` and `TimerRunner`, in simulated time.

Nothing here re-implements the poll loop: the pod boots the production `TimerRunner` as a task
on the simulator's event loop, whose clock is simulated time, so the runner's sleeps, recovery
pacing, error handling and graceful stop are the ones that ship. Only the pacing can differ:
in racing runs every pod polls on one lock-step grid (`LockStepPacer`), the harder case for
claiming. Messages are tasks too. A crash cancels every task of the pod mid-await (the loop
tracks which pod owns each task, however deep) and drops its stores, memory and fallback
timers included.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import simpy

from record.pod_events import conversation_ended, message_received, pod_started
from sim.clock import SimClock
from sim.loop import TaskOwner
from sim.network import PodLink
from store.base import aclose_store
from store.events import EventSink
from store.fallback import FallbackTimerStore
from store.pacing import Pacer, PollPacer
from store.runner import TimerRunner
from store.service import PollResult, TimerService

if TYPE_CHECKING:
    from sim.world import World


def until_next_tick(now: float, interval: float) -> float:
    """Seconds from `now` to the next multiple of `interval` strictly after it.

    A time a rounding error short of a multiple counts as that multiple: `now % interval` of
    21.999999999999996 is a hair below 1, and a delay of 4e-15 added to `now` rounds back to
    `now`, so time would never move on (a poll in zero simulated time, forever).
    """
    return (math.floor(now / interval + 1e-9) + 1) * interval - now


class LockStepPacer:
    """Every pod polls at the same instants: the multiples of the poll interval.

    No jitter and no backlog pacing: pods meet at each grid point, which is what lets a
    store's claim race show.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def next_delay(self, last: PollResult | None) -> float:
        return until_next_tick(asyncio.get_running_loop().time(), self.interval)


class SimPod(TaskOwner):
    """One pod: its clock, its link to Redis, and (while up) its runner and store stack."""

    def __init__(self, world: World, index: int) -> None:
        super().__init__()
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
        settings = world.spec.settings
        self.pacer: Pacer = (
            LockStepPacer(settings.poll_interval)
            if world.spec.workload.racing
            else PollPacer(settings, world.rng(f"pacer:{index}"))
        )
        self.alive = False
        self.incarnation = 0
        self.runner: TimerRunner | None = None
        self.crash_after_claim = False
        """Armed by a crash-mid-claim fault: die at the first callback after a claim."""
        self._claimed = False
        self.restart_after: float = 0.0
        self.crash_fault_index = 0
        """The crash-mid-claim fault that armed `crash_after_claim` (its `fault_end` names it)."""

    @property
    def service(self) -> TimerService:
        assert self.runner is not None, f"{self.name} is down"
        return self.runner.service

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Boot: a fresh store stack, service and runner; recovery, then the poll loop.

        Overlapping faults may both restart the pod; the first one boots it.
        """
        if self.alive:
            return
        self.incarnation += 1
        sink = self._sink_of(self.incarnation)
        try:
            store = self.world.build_store(self, sink)
        except Exception as exc:  # the user's store cannot be built: this pod cannot boot
            self.record("store_error", op="create", error=type(exc).__name__, message=str(exc))
            return
        service = TimerService(
            store, self.clock, self._fire, settings=self.world.spec.settings, sink=sink
        )
        self.runner = TimerRunner(service, pacer=self.pacer)
        self.alive = True
        pod_started(
            self.record, self.incarnation, service.delivery, isinstance(store, FallbackTimerStore)
        )
        phase = 0.0
        if self.incarnation == 1 and self.world.spec.poll_phase_spread > 0:
            phase = self.world.rng(f"phase:{self.index}").uniform(
                0.0, self.world.spec.poll_phase_spread
            )
        self.run(self._boot(self.runner, phase))

    async def _boot(self, runner: TimerRunner, phase: float) -> None:
        if phase:
            await asyncio.sleep(phase)
        await runner.start()

    def crash(self, reason: str) -> None:
        """Die now: every task of the pod stops at its next await, memory is gone."""
        if not self.alive:
            return
        lost = self._fallback_instances()
        self.record("pod_crash", reason=reason, fallback_lost=lost, incarnation=self.incarnation)
        self.alive = False
        self.crash_after_claim = self._claimed = False
        self.cancel_tasks()
        self.runner = None

    async def shutdown(self) -> None:
        """End of run: the runner's graceful stop (its fallback drains), then the store closes."""
        runner = self.runner
        if not self.alive or runner is None:
            return
        await runner.stop()
        store = runner.service.store
        pending = store.fallback_pending() if isinstance(store, FallbackTimerStore) else 0
        await aclose_store(store)
        self.record("pod_stop", incarnation=self.incarnation, fallback_pending=pending)
        self.alive = False

    # -- work -------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any]) -> simpy.Event:
        """Start a coroutine as a task of this pod; the SimPy event fires when it ends."""
        return self.world.bridge.run(coro, owner=self)

    def handle_message(
        self, sender_id: str, session_id: str, timeout: float, metadata: dict[str, Any] | None
    ) -> simpy.Event:
        if self.world.spec.costs is not None:
            return self.run(self._handle_on_cpu(sender_id, session_id, timeout, metadata))
        # The service arms `now + timeout` on this clock, at this instant.
        when = self.clock.now() + timeout
        message_received(self.record, sender_id, session_id, timeout, when, metadata)
        return self.run(self.service.schedule_timer(sender_id, session_id, timeout, metadata))

    async def _handle_on_cpu(
        self, sender_id: str, session_id: str, inactivity: float, metadata: dict[str, Any] | None
    ) -> None:
        """A message in a run with costs: it waits for the pod's CPU, and is handled (and
        recorded) when its turn comes, as a busy pod handles it; a crash meanwhile loses it
        with the pod."""
        assert self.world.spec.costs is not None
        await self.link.cpu.use(self.world.spec.costs.pod_per_message)
        when = self.clock.now() + inactivity
        message_received(self.record, sender_id, session_id, inactivity, when, metadata)
        await self.service.schedule_timer(sender_id, session_id, inactivity, metadata)

    def handle_end(self, sender_id: str) -> simpy.Event:
        if self.world.spec.costs is not None:
            return self.run(self._end_on_cpu(sender_id))
        conversation_ended(self.record, sender_id)
        return self.run(self.service.cancel_timer(sender_id))

    async def _end_on_cpu(self, sender_id: str) -> None:
        """A conversation's end in a run with costs: in the CPU's queue behind its messages."""
        assert self.world.spec.costs is not None
        await self.link.cpu.use(self.world.spec.costs.pod_per_message)
        conversation_ended(self.record, sender_id)
        await self.service.cancel_timer(sender_id)

    async def _fire(
        self, sender_id: str, session_id: str | None, scheduled_time: float, fire_id: str
    ) -> None:
        """The conversation-inactive action: takes a little time (and CPU, with costs), then
        succeeds."""
        costs = self.world.spec.costs
        if costs is not None:
            await self.link.cpu.use(costs.pod_per_fire)
        await asyncio.sleep(self.world.spec.fire_duration)

    # -- recording --------------------------------------------------------------------------

    def _sink_of(self, incarnation: int) -> EventSink:
        """Where one incarnation's store and service report; also the crash-mid-claim trigger.

        Armed by a crash-mid-claim fault, the pod dies at the first callback after a claim:
        every claim of that batch is recorded (the store leased them all), no callback runs.
        A dead incarnation records nothing more.
        """

        def sink(kind: str, /, **fields: Any) -> None:
            if not self.alive or incarnation != self.incarnation:
                return
            if kind == "fire" and self.crash_after_claim and self._claimed:
                self.world.crash_and_restart(self, "crash_mid_claim")
                return
            self.record(kind, **fields)
            if kind == "claim" and self.crash_after_claim:
                self._claimed = True

        return sink

    def record(self, kind: str, /, **fields: Any) -> None:
        self.world.history.record(self.env.now, self.clock.now(), self.name, kind, **fields)

    def _fallback_instances(self) -> list[str]:
        store = None if self.runner is None else self.runner.service.store
        if isinstance(store, FallbackTimerStore):
            return store.fallback_instances()
        return []


def seeded(world_seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream for one purpose (str seeds hash stably)."""
    return random.Random(f"{world_seed}:{purpose}")
