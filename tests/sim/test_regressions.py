"""Every fresh-seed failure of the reference store, replayed from its shrunk plan.

`regressions.yaml` says, per entry, the rule it broke and what was wrong (the store, the
simulator or the checker). Each was shrunk on the code that failed; it must pass now.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.simrun import run_and_check
from record.faults import FaultPlan
from sim.scenarios import build_spec

ENTRIES: list[dict[str, Any]] = yaml.safe_load(
    Path(__file__).with_name("regressions.yaml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['seed']}-{e['broke']}" for e in ENTRIES])
def test_a_shrunk_failure_passes(entry: dict[str, Any], tmp_path: Path) -> None:
    spec = build_spec("swarm", entry["seed"])
    if entry["faults"] is not None:
        spec = spec.with_plan(FaultPlan.from_data(entry["faults"], spec.pods))
    if entry["conversations"] is not None:
        spec = spec.with_workload(dataclasses.replace(spec.workload, limit=entry["conversations"]))
    verdict, _ = run_and_check(spec, tmp_path)
    assert verdict.rules().get(entry["broke"], 0) == 0, verdict.table()
    assert verdict.ok, verdict.table()
