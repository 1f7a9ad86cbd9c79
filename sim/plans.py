"""Random fault plans from a seed.

Swarm testing: each seed enables a random subset of fault kinds, so over many seeds every
combination of faults meets; each fault gets a time and a length drawn from the seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from record.faults import KINDS, PERSISTENCE, Fault, FaultPlan, PlanError, process_clash


def lost_window(persistence: str, rng: random.Random) -> float:
    """How far before a crash the data are kept (math.inf: nothing is kept)."""
    if persistence == "none":
        return float("inf")
    if persistence == "rdb":
        return rng.uniform(0.0, 10.0)  # `save 10 1`-like: up to the last save
    if persistence == "aof_everysec":
        return rng.uniform(0.0, 2.0)
    return 0.0


def random_fault(kind: str, rng: random.Random, pods: int, window: tuple[float, float]) -> Fault:
    """One fault of `kind` at a random time inside `window`."""
    start = round(rng.uniform(*window), 3)
    if kind == "redis_outage":
        mode = rng.choice(("kill", "pause"))
        return Fault(kind, start, round(rng.uniform(2.0, 12.0), 3), mode=mode)
    if kind == "partial_outage":
        return Fault(kind, start, round(rng.uniform(2.0, 12.0), 3), pod=rng.randrange(pods))
    if kind == "redis_restart":
        persistence = rng.choice(PERSISTENCE)
        window_lost = lost_window(persistence, rng)
        return Fault(
            kind,
            start,
            round(rng.uniform(0.5, 4.0), 3),
            persistence=persistence,
            lost_window=None if window_lost == float("inf") else round(window_lost, 3),
        )
    if kind in {"pod_crash", "crash_mid_claim"}:
        return Fault(kind, start, round(rng.uniform(1.0, 8.0), 3), pod=rng.randrange(pods))
    if kind == "slow_redis":
        return Fault(
            kind, start, round(rng.uniform(2.0, 10.0), 3), latency=rng.choice((0.05, 0.2, 0.4, 0.8))
        )
    if kind == "clock_skew":
        offsets = tuple(round(rng.uniform(-1.5, 1.5), 3) for _ in range(pods))
        drifts = tuple(round(rng.uniform(-1e-4, 1e-4), 7) for _ in range(pods))
        return Fault(kind, start, round(rng.uniform(5.0, 30.0), 3), offsets=offsets, drifts=drifts)
    raise PlanError(f"unknown fault kind {kind!r}")


def swarm_plan(
    rng: random.Random, pods: int, window: tuple[float, float], kinds: Sequence[str] = KINDS
) -> FaultPlan:
    """Swarm testing: a random subset of fault kinds, each one to two times."""
    enabled = [kind for kind in kinds if rng.random() < 0.5] or [rng.choice(list(kinds))]
    faults = [
        random_fault(kind, rng, pods, window)
        for kind in enabled
        for _ in range(rng.choice((1, 1, 2)))
    ]
    faults.sort(key=lambda f: (f.start, f.kind))
    kept: list[Fault] = []
    for fault in faults:
        if not any(process_clash(other, fault) for other in kept):
            kept.append(fault)
    return FaultPlan(tuple(kept))
