"""What the checker needs to know about a run besides its history: its timing parameters.

Simulated runs and load runs both write `run.json`; `RunInfo.load` reads either. Fault windows
are not here: they come from the history's `fault_start` / `fault_end` rows, which both kinds of
run record as they happen.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from record.faults import FaultPlan
from store.options import ServiceSettings

SERVICE_FIELDS = tuple(f.name for f in fields(ServiceSettings))


@dataclass(frozen=True)
class RunInfo:
    """The parameters that the lateness and fallback bounds are made of."""

    kind: str = "sim"
    scenario: str = ""
    seed: int | None = None
    service: ServiceSettings = field(default_factory=ServiceSettings)
    """The pods' timer settings: poll interval and jitter, lease, probe, recovery rate..."""
    socket_timeout: float = 0.5
    latency: float = 0.001
    """Largest one-way latency between a pod and Redis (seconds)."""
    fire_duration: float = 0.0
    max_skew: float = 0.0
    """Largest clock offset between two pods during the run (the early-fire tolerance S)."""
    buckets: int = 1
    key_prefix: str | None = None
    custom_in_redis: bool = False
    """A five-method store whose own client keeps its timers in the run's Redis (built by each
    pod from a `timer_store` section): what a Redis restart loses, it loses too."""
    loop_stall_bound: float = 1.0
    """Longest event-loop stall a pod may have (real processes measure their loop lag)."""
    notes: tuple[str, ...] = ()
    """What a reader of the verdict must know about how the store was run."""
    end: float = 0.0
    """True time at which the run ended."""

    @classmethod
    def load(cls, path: Path) -> RunInfo:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "spec" in data:  # a simulated run
            info = cls.from_sim(data["spec"], data["duration"])
            return dataclasses.replace(info, notes=tuple(data.get("notes", ())))
        return cls.from_data(data.get("info", data))

    @classmethod
    def from_sim(cls, spec: dict[str, Any], duration: float) -> RunInfo:
        plan = FaultPlan.from_data(spec["plan"], spec["pods"])
        return cls(
            kind="sim",
            scenario=spec["scenario"],
            seed=spec["seed"],
            service=ServiceSettings(**spec["settings"]),
            socket_timeout=spec["socket_timeout"],
            latency=spec["latency"] * (1 + spec["latency_jitter"]),
            fire_duration=spec["fire_duration"],
            max_skew=plan.max_skew(),
            buckets=spec["buckets"],
            custom_in_redis=(spec.get("store_config") or {}).get("type") not in (None, "redis"),
            end=duration,
        )

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunInfo:
        """Inverse of `to_data` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)} - {"service"}
        service = {k: v for k, v in data.items() if k in SERVICE_FIELDS}
        values = {k: v for k, v in data.items() if k in known}
        values["notes"] = tuple(values.get("notes", ()))
        return cls(service=ServiceSettings(**service), **values)

    def to_data(self) -> dict[str, Any]:
        """Flat, JSON-ready: the service settings beside the run's own parameters."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "service"}
        return {**dataclasses.asdict(self.service), **data}
