"""`FallbackStats`: what a `FallbackTimerStore` counts, for metrics (`store.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FallbackStats:
    """Counters since start, for metrics; `outage` holds the current outage's merge counts."""

    activations: int = 0
    deactivations: int = 0
    outage_writes: int = 0
    reconciled_applied: int = 0
    reconciled_skipped: int = 0
    reconciled_unverified: int = 0
    outage: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        """Count one merge outcome, in the totals and in this outage."""
        setattr(self, f"reconciled_{name}", getattr(self, f"reconciled_{name}") + 1)
        self.outage[name] = self.outage.get(name, 0) + 1
