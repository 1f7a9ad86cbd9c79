"""Every named scenario runs, passes on the reference stack, and exercises its fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.simrun import run_and_check
from sim.scenarios import PLANS, build_spec

EXPECTED_EVIDENCE = {
    "redis-outage": "fallback activated",
    "redis-hang": "fallback activated",
    "partial-outage": "fallback activated",
    "redis-restart-nopersist": "fallback activated",
    "redis-restart-aof": "fallback activated",
    "pod-crash": "pod crashed",
    "crash-mid-claim": "pod crashed",
    "slow-redis": "fallback activated",
    "clock-skew": "applied",
}


@pytest.mark.parametrize("scenario", sorted(PLANS))
def test_named_scenario_passes_and_exercises_its_fault(scenario: str, tmp_path: Path) -> None:
    verdict, _ = run_and_check(build_spec(scenario, 1), tmp_path)
    assert verdict.ok, verdict.table()
    assert verdict.stats["fires"] > 0
    if scenario in EXPECTED_EVIDENCE:
        assert verdict.exercised, "the fault left no trace"
        evidence = list(verdict.exercised.values())
        assert all(EXPECTED_EVIDENCE[scenario] in e for e in evidence), evidence


def test_crash_mid_claim_really_crashes_between_claim_and_fire(tmp_path: Path) -> None:
    """The pod dies right after a claim: another pod re-fires the same fire id later."""
    verdict, _ = run_and_check(build_spec("crash-mid-claim", 1), tmp_path)
    history = (tmp_path / "history.csv").read_text()
    assert '""reason"": ""crash_mid_claim""' in history
    assert verdict.ok


def test_restart_without_persistence_declares_what_it_lost(tmp_path: Path) -> None:
    verdict, _ = run_and_check(build_spec("redis-restart-nopersist", 2), tmp_path)
    assert verdict.ok
    assert verdict.declared["restart_lost_write"] > 0
