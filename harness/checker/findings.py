"""What a rule returns: violations, and the losses it declares instead."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """A broken rule, with the history rows that show it."""

    rule: str
    message: str
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Findings:
    """Violations in the order found, and declared losses by class."""

    violations: tuple[Violation, ...] = ()
    declared: tuple[str, ...] = ()
    """One entry per declared loss: its class."""

    def declared_counts(self) -> Counter[str]:
        return Counter(self.declared)


def combine(*parts: Findings) -> Findings:
    """All the findings, in the order given."""
    return Findings(
        tuple(v for part in parts for v in part.violations),
        tuple(d for part in parts for d in part.declared),
    )
