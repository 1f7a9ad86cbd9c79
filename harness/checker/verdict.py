"""The verdict: the model built once, the bounds derived from it, every rule family run on
both, and the result as text and JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.checker.bounds import Bound, derive_bounds
from harness.checker.build import build_model
from harness.checker.findings import Violation, combine
from harness.checker.model import Row
from harness.checker.reach import Reach
from harness.checker.rules.claims import check_claims
from harness.checker.rules.fallback import check_fallback
from harness.checker.rules.liveness import check_liveness
from harness.checker.rules.outcomes import (
    check_failed_writes,
    check_loop_stalls,
    check_store_errors,
    check_vacuous,
    loop_lags,
)
from harness.checker.views import stale_fires, timeline
from record.history import read_history
from record.runinfo import RunInfo

RULES = (
    "duplicate",
    "unexplained_refire",
    "superseded",
    "early",
    "lost",
    "late",
    "fallback_activation",
    "fallback_deactivation",
    "fallback_flapping",
    "spurious_fallback",
    "unknown_instance",
    "not_exercised",
    "payload",
    "write_failed",
    "store_error",
    "vacuous",
    "loop_stall",
)
DECLARED = (
    "restart_lost_write",
    "restart_resurrection",
    "fallback_lost_on_crash",
    "crash_between_claim_and_fire",
    "skipped_by_policy",
    "gave_up",
    "failover_lost_write",
    "failover_resurrection",
    "write_failed_outage",
    "write_failed_crash",
)


@dataclass
class Verdict:
    """The checker's result for one run."""

    info: RunInfo
    violations: list[Violation]
    declared: Counter[str]
    exercised: dict[str, str]
    bounds: list[Bound]
    stats: dict[str, float]
    fires: list[dict[str, Any]] = field(default_factory=list)
    """Per fired timer: pod, deadline, fire time, lateness (for reports)."""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """Spans to draw: fault windows, each pod's fallback and downtime (lane, what, start, end)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def rules(self) -> Counter[str]:
        return Counter(v.rule for v in self.violations)

    def table(self) -> str:
        """The verdict as text: bounds, rule counts, declared losses, exercised faults."""
        outcome = "PASS" if self.ok else "FAIL"
        lines = [f"verdict: {outcome}  ({self.info.scenario}, seed {self.info.seed})"]
        lines += [f"  {bound.describe()}" for bound in self.bounds]
        lines.append("  rules:")
        counts = self.rules()
        for rule in RULES:
            lines.append(f"    {rule:<24} {counts.get(rule, 0):>6}")
        lines.append("  declared losses:")
        for name in DECLARED:
            lines.append(f"    {name:<32} {self.declared.get(name, 0):>6}")
        if self.exercised:
            lines.append("  faults exercised:")
            lines += [f"    {fault:<32} {evidence}" for fault, evidence in self.exercised.items()]
        lines.append("  stats: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.stats.items()))
        lines += [f"  note: {note}" for note in self.info.notes]
        for violation in self.violations[:20]:
            rows = ",".join(str(r) for r in violation.rows[:8])
            lines.append(f"  ! {violation.rule}: {violation.message} (rows {rows})")
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join(lines)

    def to_data(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "info": self.info.to_data(),
            "rules": {rule: self.rules().get(rule, 0) for rule in RULES},
            "declared": {name: self.declared.get(name, 0) for name in DECLARED},
            "exercised": self.exercised,
            "bounds": [
                {
                    "name": b.name,
                    "formula": b.formula,
                    "terms": dict(b.terms),
                    "value": round(b.value, 6),
                }
                for b in self.bounds
            ],
            "stats": self.stats,
            "violations": [
                {"rule": v.rule, "message": v.message, "rows": list(v.rows)}
                for v in self.violations
            ],
        }


def _fmt(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def check(rows: list[Row], info: RunInfo) -> Verdict:
    """Judge parsed history rows (dicts with a parsed `d` detail) of one run."""
    model = build_model(rows, info)
    bounds = derive_bounds(model)
    reach = Reach(model, bounds.deactivation.value)
    liveness = check_liveness(model, reach, bounds.lateness)
    traces = check_fallback(model, bounds)
    fires = sum(len(v) for v in model.fires_ok.values())
    findings = combine(
        check_store_errors(model),
        check_claims(model),
        liveness.findings,
        check_failed_writes(model),
        check_loop_stalls(model),
        traces.findings,
        check_vacuous(model, fires),
    )
    lateness = sorted(liveness.lateness)
    lags = loop_lags(model)
    stats: dict[str, float] = {
        "instances": len(model.instances),
        "fires": fires,
        "raw_refires": sum(len(starts) - 1 for starts in model.fire_starts.values()),
        "stale_fires": stale_fires(model),
        "activations": sum(len(v) for v in model.activations.values()),
        "lateness_p50": lateness[len(lateness) // 2] if lateness else 0.0,
        "lateness_p99": lateness[int(len(lateness) * 0.99)] if lateness else 0.0,
        "lateness_max": lateness[-1] if lateness else 0.0,
        "loop_lag_max": max(lags, default=0.0),
    }
    return Verdict(
        info,
        list(findings.violations),
        findings.declared_counts(),
        traces.exercised,
        bounds.all(),
        stats,
        list(liveness.fires),
        timeline(model),
    )


def load_rows(history: Path | IO[str]) -> list[Row]:
    """History rows as dicts, NaN as None, `detail` parsed into `d`."""
    frame = read_history(history)
    records: list[Row] = [
        {str(k): v for k, v in record.items()}
        for record in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    for row in records:
        row["d"] = json.loads(row["detail"]) if row["detail"] else {}
        for key in ("version", "attempt", "seq"):
            if row[key] is not None:
                row[key] = int(row[key])
    return records


def check_run(run_dir: Path) -> Verdict:
    """Judge the run in `run_dir` (its `history.csv` and `run.json`)."""
    info = RunInfo.load(run_dir / "run.json")
    return check(load_rows(run_dir / "history.csv"), info)
