"""Faults as data: a plan is a list of `Fault`s, stored with the run and in its history.

Kinds:
- `redis_outage`: Redis unreachable for every pod; `mode` is `kill` (connections refused) or
  `pause` (SIGSTOP: requests hang, and run when it resumes);
- `partial_outage`: one pod cut off from Redis while the others reach it;
- `redis_restart`: Redis killed and restarted after `duration`, keeping what `persistence`
  (`none | rdb | aof_everysec | aof_always`) keeps: the data as they were `lost_window`
  seconds before the crash (0 for aof_always, everything for none);
- `pod_crash`: a pod dies (memory and fallback timers lost) and restarts after `duration`;
- `crash_mid_claim`: a pod dies right after its next claim, before the callback runs, and
  restarts after `duration`;
- `slow_redis`: every reply takes `latency` seconds longer;
- `clock_skew`: pods' clocks step by `offsets` (seconds, one per pod) and drift by `drifts`.

A load run uses the same vocabulary (a sentinel or cluster failover is a `redis_outage` of
mode `failover`), so both drivers record faults one way and one checker reads them. Random plans
are the simulator's (`sim.plans`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = (
    "redis_outage",
    "partial_outage",
    "redis_restart",
    "pod_crash",
    "crash_mid_claim",
    "slow_redis",
    "clock_skew",
)
PERSISTENCE = ("none", "rdb", "aof_everysec", "aof_always")
OUTAGE_MODES = ("kill", "pause", "failover")
"""How Redis is lost: killed (connections refused), paused (SIGSTOP: requests hang and run on
resume), or its master killed so a replica takes over (load runs on sentinel or cluster)."""


class PlanError(ValueError):
    """A fault plan that cannot run (unknown kind, pod out of range, negative time...)."""


@dataclass(frozen=True)
class Fault:
    """One fault: what, when (simulated seconds from the start), for how long, and details."""

    kind: str
    start: float
    duration: float
    pod: int | None = None
    mode: str | None = None
    persistence: str | None = None
    lost_window: float | None = None
    latency: float | None = None
    offsets: tuple[float, ...] | None = None
    drifts: tuple[float, ...] | None = None

    @property
    def end(self) -> float:
        return self.start + self.duration

    def describe(self) -> str:
        """One line for summaries."""
        extras = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"kind", "start", "duration"} and v is not None
        }
        detail = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{self.kind} at {self.start:.1f}s for {self.duration:.1f}s {detail}".rstrip()


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one run, ordered by start time."""

    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def kinds(self) -> set[str]:
        return {fault.kind for fault in self.faults}

    def max_skew(self) -> float:
        """The early-fire tolerance S: how far one pod's clock can be ahead of another's.

        A timer is armed by one pod at one time and fired by another pod later, so S is the
        highest offset any pod ever has minus the lowest any pod ever has (0 when unskewed);
        overlapping skews add up, and drift adds at most `|drift| × duration` on each side.
        """
        skews = [f for f in self.faults if f.kind == "clock_skew" and f.offsets]
        highest = lowest = drift = 0.0
        for moment in sorted({f.start for f in skews} | {f.end for f in skews}):
            active = [f for f in skews if f.start <= moment < f.end]
            if not active:
                continue
            for pod in range(len(active[0].offsets or ())):
                offset = sum((f.offsets or ())[pod] for f in active)
                highest, lowest = max(highest, offset), min(lowest, offset)
        for fault in skews:
            drift += max((abs(d) for d in fault.drifts or ()), default=0.0) * fault.duration
        return highest - lowest + 2 * drift

    def without(self, index: int) -> FaultPlan:
        """This plan minus one fault (for shrinking)."""
        return FaultPlan(self.faults[:index] + self.faults[index + 1 :])

    def to_data(self) -> list[dict[str, Any]]:
        return [
            {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(f).items()
                if v is not None
            }
            for f in self.faults
        ]

    @classmethod
    def from_data(cls, data: Iterable[dict[str, Any]], pods: int) -> FaultPlan:
        faults = []
        for index, item in enumerate(data):
            try:
                values = dict(item)
                for key in ("offsets", "drifts"):
                    if values.get(key) is not None:
                        values[key] = tuple(float(v) for v in values[key])
                fault = Fault(**values)
            except TypeError as exc:
                raise PlanError(f"faults[{index}]: {exc}") from None
            _check(fault, index, pods)
            faults.append(fault)
        faults.sort(key=lambda f: (f.start, f.kind))
        for index, earlier in enumerate(faults):
            for later in faults[index + 1 :]:
                if process_clash(earlier, later):
                    raise PlanError(
                        f"{later.kind} at {later.start}s overlaps the {earlier.kind} at "
                        f"{earlier.start}s: a restart kills the process the other acts on"
                    )
        return cls(tuple(faults))

    @classmethod
    def load(cls, path: Path, pods: int) -> FaultPlan:
        """Read a plan from YAML or JSON (a list of faults, or {faults: [...]})."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PlanError(f"cannot read fault plan {path}: {exc}") from None
        if isinstance(data, dict):
            data = data.get("faults", [])
        if not isinstance(data, list):
            raise PlanError(f"{path}: a fault plan is a list of faults")
        return cls.from_data(data, pods)

    def dumps(self) -> str:
        return json.dumps(self.to_data(), sort_keys=True)


def _check(fault: Fault, index: int, pods: int) -> None:
    where = f"faults[{index}]"
    if fault.kind not in KINDS:
        raise PlanError(f"{where}.kind: unknown fault {fault.kind!r}; known: {', '.join(KINDS)}")
    if fault.start < 0 or fault.duration < 0:
        raise PlanError(f"{where}: start and duration must not be negative")
    if fault.kind in {"partial_outage", "pod_crash", "crash_mid_claim"} and not (
        fault.pod is not None and 0 <= fault.pod < pods
    ):
        raise PlanError(f"{where}.pod: must be a pod index below {pods}")
    if fault.kind == "redis_restart" and fault.persistence not in PERSISTENCE:
        raise PlanError(f"{where}.persistence: one of {', '.join(PERSISTENCE)}")
    if fault.kind == "redis_outage" and fault.mode not in OUTAGE_MODES:
        raise PlanError(f"{where}.mode: one of {', '.join(OUTAGE_MODES)}")
    if fault.kind == "clock_skew" and (fault.offsets is None or len(fault.offsets) != pods):
        raise PlanError(f"{where}.offsets: one offset per pod ({pods})")


def _stops_process(fault: Fault) -> bool:
    return fault.kind == "redis_restart" or (fault.kind == "redis_outage" and fault.mode == "pause")


def process_clash(a: Fault, b: Fault) -> bool:
    """Two faults on the Redis process itself that overlap in time.

    A restart kills the process, so a pause (SIGSTOP) or another restart during it has no
    process to act on; such plans cannot be modelled and are refused.
    """
    restart = a.kind == "redis_restart" or b.kind == "redis_restart"
    overlap = a.start < b.end and b.start < a.end
    return restart and _stops_process(a) and _stops_process(b) and overlap
