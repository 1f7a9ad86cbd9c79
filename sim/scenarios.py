"""The named scenario library: each name plus a seed gives a `RunSpec`.

Every scenario's fault is placed inside the traffic window so it is exercised, at a time and
for a length drawn from the seed. `swarm` draws the fault kinds too, and the traffic shape:
in about half its seeds pods poll in lock step (no jitter, equal latency) while messages re-arm
timers exactly at their deadlines, which is what lets a store's claim race show.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from record.faults import Fault, FaultPlan
from sim.plans import lost_window, random_fault, swarm_plan
from sim.spec import RunSpec
from sim.workload import WorkloadSpec
from store.options import ServiceSettings

WINDOW = (8.0, 45.0)
"""Faults start inside this part of the traffic window (seconds)."""

BASE_SETTINGS = ServiceSettings(lease_seconds=5.0, fire_timeout=2.0, probe_interval=1.0)


def _rng(name: str, seed: int) -> random.Random:
    return random.Random(f"{seed}:scenario:{name}")


def _one(kind: str) -> Callable[[random.Random, int], FaultPlan]:
    def plan(rng: random.Random, pods: int) -> FaultPlan:
        return FaultPlan((random_fault(kind, rng, pods, WINDOW),))

    return plan


def _outage(rng: random.Random, pods: int) -> FaultPlan:
    return FaultPlan(
        (
            Fault(
                "redis_outage",
                round(rng.uniform(*WINDOW), 3),
                round(rng.uniform(4, 12), 3),
                mode="kill",
            ),
        )
    )


def _restart(persistence: str) -> Callable[[random.Random, int], FaultPlan]:
    def plan(rng: random.Random, pods: int) -> FaultPlan:
        window = lost_window(persistence, rng)
        fault = Fault(
            "redis_restart",
            round(rng.uniform(*WINDOW), 3),
            round(rng.uniform(1.0, 4.0), 3),
            persistence=persistence,
            lost_window=None if window == float("inf") else round(window, 3),
        )
        return FaultPlan((fault,))

    return plan


def _crash_mid_claim(rng: random.Random, pods: int) -> FaultPlan:
    faults = tuple(
        Fault(
            "crash_mid_claim",
            round(rng.uniform(*WINDOW), 3),
            round(rng.uniform(1, 5), 3),
            pod=i % pods,
        )
        for i in range(2)
    )
    return FaultPlan(tuple(sorted(faults, key=lambda f: f.start)))


PLANS: dict[str, Callable[[random.Random, int], FaultPlan]] = {
    "baseline": lambda rng, pods: FaultPlan(),
    "redis-outage": _outage,
    "redis-hang": lambda rng, pods: FaultPlan(
        (
            Fault(
                "redis_outage",
                round(rng.uniform(*WINDOW), 3),
                round(rng.uniform(3, 8), 3),
                mode="pause",
            ),
        )
    ),
    "partial-outage": _one("partial_outage"),
    "redis-restart-nopersist": _restart("none"),
    "redis-restart-aof": _restart("aof_everysec"),
    "pod-crash": _one("pod_crash"),
    "crash-mid-claim": _crash_mid_claim,
    "clock-skew": _one("clock_skew"),
    "slow-redis": lambda rng, pods: FaultPlan(
        (
            Fault(
                "slow_redis",
                round(rng.uniform(*WINDOW), 3),
                round(rng.uniform(3, 8), 3),
                latency=0.8,
            ),
        )
    ),
    "race": lambda rng, pods: FaultPlan(),
}
"""Scenario name -> how its fault plan is drawn from the seed."""

SCENARIOS = (*PLANS, "swarm")


def build_spec(
    name: str,
    seed: int,
    *,
    pods: int = 3,
    store: str | None = None,
    store_config: dict[str, Any] | None = None,
) -> RunSpec:
    """The run of scenario `name` with `seed`."""
    rng = _rng(name, seed)
    workload = WorkloadSpec()
    settings = BASE_SETTINGS
    latency_jitter = 0.5
    if name == "swarm":
        plan = swarm_plan(rng, pods, WINDOW)
        racing = rng.random() < 0.5
        workload = WorkloadSpec(
            routing=rng.choice(("random", "sticky")),
            adversarial=0.5 if racing else rng.choice((0.0, 0.1)),
            racing=racing,
            end_probability=rng.choice((0.1, 0.3, 0.6)),
        )
        if racing:
            settings = dataclasses.replace(settings, poll_jitter=0.0)
            latency_jitter = 0.0
    elif name in PLANS:
        plan = PLANS[name](rng, pods)
        if name == "race":
            workload = WorkloadSpec(
                adversarial=0.5, racing=True, timeouts=(2.0, 3.0, 4.0), think_time_mean=2.0
            )
            settings = dataclasses.replace(settings, poll_jitter=0.0)
            latency_jitter = 0.0
    else:
        raise KeyError(name)
    return RunSpec(
        scenario=name,
        seed=seed,
        pods=pods,
        workload=workload,
        plan=plan,
        settings=settings,
        latency_jitter=latency_jitter,
        store=store,
        store_config=store_config,
    )
