"""One simulated run, checked: what `timerlab sim`, `gate`, `replay` and `shrink` share."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness.checker import Verdict, check_run
from record.logs import configure_logging
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
    seconds: float = 0.0
    """Wall time of the seed (simulation and check)."""
    error: str = ""
    """Set when timerlab itself failed on this seed (a harness error, not a verdict)."""


def run_and_check(spec: RunSpec, out_dir: Path) -> tuple[Verdict, str]:
    """Simulate `spec` into `out_dir`, judge it, write `verdict.json`; (verdict, history hash)."""
    result = run_world(spec, out_dir)
    verdict = check_run(out_dir)
    (out_dir / "verdict.txt").write_text(verdict.table() + "\n", encoding="utf-8")
    (out_dir / "verdict.json").write_text(json.dumps(verdict.to_data(), indent=2) + "\n")
    return verdict, result.history_hash


def run_seed(args: tuple[RunSpec, str]) -> Outcome:
    """Process-pool entry point: one seed, quiet logs.

    A failure of timerlab itself is returned, not raised, with its traceback written to
    `harness-error.txt` in the run's directory, so one bad seed never stops the others.
    """
    spec, out_dir = args
    configure_logging(logging.ERROR)
    started = time.monotonic()
    try:
        verdict, digest = run_and_check(spec, Path(out_dir))
    except Exception as exc:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "harness-error.txt").write_text(traceback.format_exc())
        return Outcome(
            seed=spec.seed,
            scenario=spec.scenario,
            ok=False,
            history_hash="",
            rules={},
            declared={},
            exercised={},
            stats={},
            first_violation="",
            out_dir=out_dir,
            seconds=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
        )
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
        seconds=time.monotonic() - started,
    )
