"""One simulated run, checked: what `timerlab sim`, `gate`, `replay` and `shrink` share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checks import Verdict, check_run
from harness.logs import configure_logging
from sim.spec import RunSpec
from sim.world import run_world


@dataclass(frozen=True)
class Outcome:
    """What one seed did: its verdict in brief, and how to find the run again."""

    seed: int
    scenario: str
    ok: bool
    history_hash: str
    rules: dict[str, int]
    declared: dict[str, int]
    exercised: dict[str, str]
    stats: dict[str, float]
    first_violation: str
    out_dir: str


def run_and_check(spec: RunSpec, out_dir: Path) -> tuple[Verdict, str]:
    """Simulate `spec` into `out_dir`, judge it, write `verdict.json`; (verdict, history hash)."""
    result = run_world(spec, out_dir)
    verdict = check_run(out_dir)
    (out_dir / "verdict.txt").write_text(verdict.table() + "\n", encoding="utf-8")
    import json

    (out_dir / "verdict.json").write_text(json.dumps(verdict.to_data(), indent=2) + "\n")
    return verdict, result.history_hash


def run_seed(args: tuple[RunSpec, str]) -> Outcome:
    """Process-pool entry point: one seed, quiet logs."""
    spec, out_dir = args
    configure_logging(logging.ERROR)
    verdict, digest = run_and_check(spec, Path(out_dir))
    first = verdict.violations[0] if verdict.violations else None
    return Outcome(
        seed=spec.seed,
        scenario=spec.scenario,
        ok=verdict.ok,
        history_hash=digest,
        rules=dict(verdict.rules()),
        declared=dict(verdict.declared),
        exercised=verdict.exercised,
        stats=verdict.stats,
        first_violation="" if first is None else f"{first.rule}: {first.message}",
        out_dir=out_dir,
    )


def summary_data(outcome: Outcome) -> dict[str, Any]:
    return outcome.__dict__.copy()
