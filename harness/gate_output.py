"""What a gate leaves for CI: JUnit XML (one test case per seed) and a JSON summary.

CI systems show JUnit natively: a failing seed appears as a failed test, with the rules it
broke, the command that replays it and the report to open. The JSON is for machines that
combine gates (shards of a CI matrix) or track them over time: per seed, whether it passed,
the rules it broke with their counts, and its history hash (equal hashes mean equal runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

from harness.gate import GateResult

Replay = Callable[[int], str]
"""The command line that replays a seed."""


def write_junit(data: Mapping[str, Any], path: Path, *, suite: str) -> None:
    """One `testcase` per seed of a gate summary (`summary_data`, or a merge of slices):
    passed, `failure` (a violation) or `error` (timerlab failed)."""
    tests = TestSuite(suite)
    classname = f"timerlab.gate.{data['gate']['scenario']}"
    for item in data["seeds"]:
        case = TestCase(f"seed {item['seed']}", classname=classname)
        case.time = item["seconds"]
        if item.get("error"):
            problem = Error(item["error"], "harness_error")
            problem.text = _details(item)
            case.result = [problem]
        elif not item["passed"]:
            failure = Failure(f"rules broken: {_rules(item['rules'])}", "violation")
            failure.text = _details(item)
            case.result = [failure]
        tests.add_testcase(case)
    tests.time = data["seconds"]
    tests.update_statistics()  # type: ignore[no-untyped-call]
    document = JUnitXml()
    document.add_testsuite(tests)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.write(str(path), pretty=True)


def summary_data(
    result: GateResult,
    *,
    command: str,
    gate: Mapping[str, Any],
    replay: Replay,
    reports: Mapping[int, Path],
) -> dict[str, Any]:
    """The gate as data: what was asked (`gate`: scenario, store, seed range, shard), every
    seed's outcome, and the totals a passing gate prints."""
    totals = result.totals()
    seeds = []
    for outcome in result.outcomes:
        item: dict[str, Any] = {
            "seed": outcome.seed,
            "passed": outcome.ok,
            "rules": {rule: count for rule, count in outcome.rules.items() if count},
            "history_hash": outcome.history_hash,
            "seconds": round(outcome.seconds, 3),
        }
        if outcome.error:
            item["error"] = outcome.error
        if not outcome.ok:
            item["first_violation"] = outcome.first_violation
            item["replay"] = replay(outcome.seed)
            item["run"] = outcome.out_dir
            if outcome.seed in reports:
                item["report"] = str(reports[outcome.seed])
        seeds.append(item)
    return {
        "command": command,
        "gate": dict(gate),
        "passed": result.ok,
        "seconds": round(result.seconds, 3),
        "seeds": seeds,
        "failed": [o.seed for o in result.failures],
        "harness_errors": [o.seed for o in result.errors],
        "armed": totals["instances"],
        "fired": totals["fires"],
        "faults_exercised": dict(sorted(result.exercised().items())),
        "declared": dict(sorted(result.declared().items())),
        "slowest": [{"seed": o.seed, "seconds": round(o.seconds, 3)} for o in result.slowest()],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _rules(rules: Mapping[str, int]) -> str:
    return ", ".join(f"{rule}×{count}" for rule, count in sorted(rules.items()))


def _details(item: Mapping[str, Any]) -> str:
    lines = [item.get("error") or item.get("first_violation", ""), f"replay: {item['replay']}"]
    lines.append(f"run: {item['run']}")
    if "report" in item:
        lines.append(f"report: {item['report']}")
    return "\n".join(lines)
