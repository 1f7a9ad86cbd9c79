"""How fast the simulator is, and what SimPy and the simulated network cost.

The reference workload (8 pods, 10,000 conversations, one simulated hour, no faults) runs in
the simulator while every call the pods make to `RedisTimerStore` is recorded. The same calls,
in the same order with the same arguments, are then replayed directly on a fresh embedded
Redis in a plain asyncio loop: that is the floor, the store code alone. The figures:

- speed: simulated seconds per wall second;
- overhead: simulator wall time / replay wall time (the target is at most 2x).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
from fakeredis.aioredis import FakeRedis

from record.faults import FaultPlan
from record.logs import configure_logging
from sim.spec import RunSpec
from sim.workload import WorkloadSpec
from sim.world import PodContext, World
from store.base import SessionTimerStore
from store.endpoint import EndpointConfig
from store.redis import RedisTimerStore

Call = tuple[str, tuple[Any, ...], dict[str, Any]]
RECORDED = ("write_timer", "cancel_timer", "claim_due", "complete", "reconcile", "ping")


def reference_spec(pods: int = 8, conversations: int = 10_000, seconds: float = 3600.0) -> RunSpec:
    """The benchmark's workload: steady traffic for `seconds`, then a short drain."""
    workload = WorkloadSpec(
        conversations=conversations,
        arrival_window=seconds - 120.0,
        messages_mean=4.0,
        think_time_mean=20.0,
        timeouts=(30.0, 60.0),
    )
    return RunSpec(
        scenario="bench-reference",
        seed=1,
        pods=pods,
        workload=workload,
        plan=FaultPlan(),
        drain=90.0,
    )


class _Recorder:
    """Wraps a pod's `RedisTimerStore`: records every call, then makes it."""

    def __init__(self, inner: RedisTimerStore, calls: list[Call]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in RECORDED:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, args, kwargs))
            return await attribute(*args, **kwargs)

        return call


@dataclass(frozen=True)
class SimBenchmark:
    simulated_seconds: float
    sim_wall: float
    replay_wall: float
    calls: int

    @property
    def speed(self) -> float:
        return self.simulated_seconds / self.sim_wall

    @property
    def overhead(self) -> float:
        return self.sim_wall / self.replay_wall


def run_simulation(spec: RunSpec, out_dir: Path) -> tuple[float, float, list[Call]]:
    """(simulated seconds, wall seconds, recorded calls) of one run of `spec`."""
    calls: list[Call] = []

    def stack(context: PodContext) -> SessionTimerStore:
        reference = context.reference_stack()
        assert isinstance(reference.primary, RedisTimerStore)
        reference.primary = _Recorder(reference.primary, calls)  # type: ignore[assignment]
        return reference

    world = World(spec, out_dir, stack_factory=stack)
    started = time.perf_counter()
    result = world.run()
    return result.duration, time.perf_counter() - started, calls


def replay(calls: Sequence[Call]) -> float:
    """Wall seconds to make `calls`, in order, on a fresh embedded Redis with no simulator."""

    async def play() -> float:
        client = FakeRedis(server=fakeredis.FakeServer(version=(7,)), decode_responses=True)
        store = RedisTimerStore(EndpointConfig(type="redis", db=0), client=client)
        started = time.perf_counter()
        for name, args, kwargs in calls:
            await getattr(store, name)(*args, **kwargs)
        return time.perf_counter() - started

    return asyncio.run(play())


def measure(spec: RunSpec | None = None) -> SimBenchmark:
    """Simulate the reference workload, then replay its store calls; both timed."""
    configure_logging(logging.ERROR)
    spec = spec or reference_spec()
    with tempfile.TemporaryDirectory(prefix="timerlab-simbench-") as scratch:
        simulated, sim_wall, calls = run_simulation(spec, Path(scratch))
    return SimBenchmark(simulated, sim_wall, replay(calls), len(calls))


def main() -> None:
    import sys

    quick = "--quick" in sys.argv
    spec = reference_spec(conversations=500, seconds=600.0) if quick else reference_spec()
    result = measure(spec)
    print(
        f"{spec.pods} pods, {spec.workload.conversations} conversations, "
        f"{result.simulated_seconds:.0f} simulated s, {result.calls} store calls"
    )
    print(f"simulated/wall: {result.speed:.1f}x  (sim {result.sim_wall:.1f} s)")
    replayed = f"replay {result.replay_wall:.1f} s"
    print(f"overhead vs replayed store calls: {result.overhead:.2f}x  ({replayed})")


if __name__ == "__main__":
    main()
