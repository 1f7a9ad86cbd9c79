"""Everything that defines a simulated run: `RunSpec` (a run is a pure function of it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from record.faults import FaultPlan
from sim.costs import ServiceCosts
from sim.workload import WorkloadSpec
from store.options import ServiceSettings


@dataclass(frozen=True)
class RunSpec:
    """One run: scenario, seed, pods, traffic, faults, timing, and the store under test."""

    scenario: str
    seed: int
    pods: int = 3
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    plan: FaultPlan = field(default_factory=FaultPlan)
    settings: ServiceSettings = field(
        default_factory=lambda: ServiceSettings(lease_seconds=5.0, fire_timeout=2.0)
    )
    latency: float = 0.0005
    """Mean one-way pod-Redis latency (seconds)."""
    latency_jitter: float = 0.5
    socket_timeout: float = 0.5
    buckets: int = 1
    fire_duration: float = 0.005
    """How long the conversation-inactive callback takes."""
    poll_phase_spread: float = 0.0
    """Each pod's first poll waits a uniform-random part of this many seconds. Production pods
    start at different moments, so their polls are out of phase (capacity runs spread them
    over one poll interval); 0 starts every pod's polls at once, close together for a while,
    which is the harder case for claiming and the default for the correctness scenarios."""
    drain: float = 40.0
    """Simulated seconds after the last conversation event, so every timer can fire."""
    store: str | None = None
    """A store class (one shared instance) or pod-stack factory (`pkg.module.name`)."""
    store_config: dict[str, Any] | None = None
    """A `timer_store` section from which each pod builds its own store, as in production.
    Neither: the reference stack."""
    costs: ServiceCosts | None = None
    """Service times of Redis and of each pod's CPU (`sim/costs.py`), for capacity runs; None
    (the correctness scenarios): work takes no simulated time."""

    def duration(self, last_event: float) -> float:
        """When the run ends: the last traffic or fault, plus the drain."""
        faults_end = max((fault.end for fault in self.plan.faults), default=0.0)
        return max(last_event, faults_end) + self.drain

    def to_data(self) -> dict[str, Any]:
        """JSON-ready description, stored as the run's `run.json`."""
        data = dataclasses.asdict(self)
        data["plan"] = self.plan.to_data()
        data["workload"]["timeouts"] = list(self.workload.timeouts)
        return data

    def with_plan(self, plan: FaultPlan) -> RunSpec:
        return dataclasses.replace(self, plan=plan)

    def with_workload(self, workload: WorkloadSpec) -> RunSpec:
        return dataclasses.replace(self, workload=workload)
