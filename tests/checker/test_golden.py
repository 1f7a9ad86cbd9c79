"""The checker gives every committed history the verdict it gave it when it was committed
(see `golden.py`): rules, declared losses, evidence per fault, bounds, stats, each violation's
rows and message, and every fire's lateness (by digest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.checker.golden import runs, verdict_data


@pytest.mark.parametrize("run", runs(), ids=lambda run: run.name)
def test_the_verdict_is_the_committed_one(run: Path) -> None:
    expected = json.loads((run / "verdict.json").read_text(encoding="utf-8"))
    assert verdict_data(run) == expected


def test_the_golden_runs_break_rules_and_pass() -> None:
    """The set is worth keeping only if it holds both outcomes and the declared losses."""
    verdicts = [json.loads((run / "verdict.json").read_text()) for run in runs()]
    broken = {rule for v in verdicts for rule, count in v["rules"].items() if count}
    declared = {name for v in verdicts for name, count in v["declared"].items() if count}
    assert {True, False} <= {v["ok"] for v in verdicts}
    assert {"duplicate", "superseded", "lost", "payload", "write_failed", "store_error"} <= broken
    assert {"restart_resurrection", "fallback_lost_on_crash", "write_failed_crash"} <= declared
