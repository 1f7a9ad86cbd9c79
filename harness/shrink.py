"""`timerlab shrink`: the smallest run that still breaks the same rule.

Greedy, like property-based shrinkers: drop faults one at a time while the violation
persists, then keep only the first N conversations, with N found by bisection. Each attempt is
a full simulated run, so a failing seed shrinks in seconds.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.checker import Verdict
from harness.simrun import run_and_check
from sim.spec import RunSpec


@dataclasses.dataclass(frozen=True)
class Shrunk:
    """The minimal spec, the rule it still breaks, and how many runs shrinking took."""

    spec: RunSpec
    rule: str
    verdict: Verdict
    attempts: int


def shrink(
    spec: RunSpec, rule: str | None = None, on_attempt: Callable[[str], None] = print
) -> Shrunk | None:
    """Shrink a failing `spec`; None if it does not fail (or not with `rule`)."""
    scratch = Path(tempfile.mkdtemp(prefix="timerlab-shrink-"))
    attempts = 0

    def fails(candidate: RunSpec) -> Verdict | None:
        nonlocal attempts
        attempts += 1
        verdict, _ = run_and_check(candidate, scratch / f"attempt-{attempts}")
        broken = {v.rule for v in verdict.violations}
        return verdict if (rule in broken if rule else broken) else None

    verdict = fails(spec)
    if verdict is None:
        return None
    rule = rule or verdict.violations[0].rule
    for index in reversed(range(len(spec.plan.faults))):
        candidate = spec.with_plan(spec.plan.without(index))
        found = fails(candidate)
        if found is not None:
            spec, verdict = candidate, found
            on_attempt(f"dropped fault {index}: still breaks {rule}")
    low, high = 1, spec.workload.limit or spec.workload.conversations
    while low < high:
        middle = (low + high) // 2
        candidate = spec.with_workload(dataclasses.replace(spec.workload, limit=middle))
        found = fails(candidate)
        if found is not None:
            spec, verdict, high = candidate, found, middle
            on_attempt(f"kept the first {middle} conversations: still breaks {rule}")
        else:
            low = middle + 1
    return Shrunk(spec, rule, verdict, attempts)
