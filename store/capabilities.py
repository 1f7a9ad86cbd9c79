"""Optional fast paths that the reference stores offer beyond the five documented methods.

`TimerService` works with any `SessionTimerStore` through the five methods alone: it lists the
expired timers and claims each with a conditional `delete_timer`. That is at-most-once (a crash
between the delete and the callback loses the expiry) and costs a round trip per timer.

A store that also implements `ClaimingStore` gets the better path:

- every write gets a `Stamp`: a per-sender `version` assigned atomically by the store, so the
  order of writes is data rather than a guess from skewed pod clocks, and an `instance` id that
  names exactly this write (it doubles as the fire id of the instance);
- `claim_due` claims a whole batch of due timers in one call, optionally under a lease: the
  claimed timer stays in the store, invisible to other claimers, until `complete` releases it or
  the lease lapses and another pod re-claims it with the same fire id (at-least-once);
- `ReconcilingStore` adds what `FallbackTimerStore` needs to merge an outage's writes back.

`supports_claiming` / `supports_reconcile` are the only places that decide which path is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from store.errors import StoreUnavailableError
from store.timer import SessionTimer


@dataclass(frozen=True)
class Stamp:
    """What a write became: its place in the sender's order and its instance id."""

    version: int
    instance: str
    origin: str
    """Which backend applied it: "redis", "memory", or "fallback" (memory during an outage)."""


@dataclass(frozen=True)
class CancelResult:
    """The outcome of an unconditional cancel: whether a timer was there, and the tombstone."""

    existed: bool
    stamp: Stamp


@dataclass(frozen=True)
class Claim:
    """A due timer that this caller now owns.

    `fire_id` is stable across re-claims of the same instance (it is the instance id), so a
    receiver can drop a re-fire it has already handled. `attempt` is 1 for the first claim.
    `leased` says whether the claim must be released with `complete` (at-least-once).
    """

    timer: SessionTimer
    fire_id: str
    version: int
    attempt: int
    leased: bool
    origin: str


@dataclass(frozen=True)
class ClaimBatch:
    """One `claim_due` result, with what is left so a driver can pace a backlog."""

    claims: list[Claim]
    remaining_due: int
    """Due timers (and lapsed leases) not claimed by this call."""
    oldest_due: float | None
    """`scheduled_time` of the oldest due timer still waiting, for the lateness SLI."""
    failure: Exception | None = None
    """Part of the store failed (a partition's master was unreachable): `claims` are what the
    rest gave, which the caller fires before it treats the failure as its call's own."""


@runtime_checkable
class ClaimingStore(Protocol):
    """The batch paths of the reference stores."""

    async def write_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
        *,
        instance: str | None = None,
    ) -> Stamp:
        """`store_timer` that reports the stamp the store gave the write.

        `instance` names the write; a store that is handed one keeps it (a write retried
        elsewhere, or merged back after an outage, stays the same instance, so it fires under
        one fire id wherever it ends up). Without one, the store makes a fresh id.
        """

    async def cancel_timer(self, sender_id: str) -> CancelResult:
        """Unconditional `delete_timer` that leaves a versioned tombstone."""

    async def claim_due(self, now: float, *, limit: int, lease_until: float | None) -> ClaimBatch:
        """Claim up to `limit` timers with `scheduled_time <= now`, oldest first.

        A partitioned store (Redis buckets) may claim fewer than `limit` while more are due,
        and orders oldest first within each partition; `remaining_due` tells the caller to
        come back.

        Leases whose `lease_until` is `<= now` are re-claimed first (attempt + 1). With
        `lease_until=None` the claim deletes the timer outright (at-most-once).
        """

    async def complete(self, claims: Sequence[Claim]) -> None:
        """Release the leases of fired claims; a no-op for unleased claims."""


@dataclass(frozen=True)
class JournalEntry:
    """The final state an outage left for one sender: a timer to arm, or `None` to delete."""

    sender_id: str
    timer: SessionTimer | None
    reason: str
    """"armed", "cancelled" or "fired": why the outage left this state."""
    instance: str | None = None
    """The id of the armed write, kept when it is merged into the primary."""
    unacked_time: float | None = None
    """The scheduled time of this pod's own write that timed out when the outage began: it may
    have reached the primary after all, and must not count as somebody else's newer write."""
    unacked_cancel: bool = False
    """Likewise for a cancel that timed out."""
    own_version: int = 0
    """The newest version this pod itself already wrote to the primary for the sender while
    merging this outage (a merge that failed half way, then retried): ours, not newer."""


@dataclass(frozen=True)
class ReconcileOutcome:
    """What reconciling one journal entry did."""

    sender_id: str
    applied: bool
    """False when the primary held a newer write for the sender, which then wins."""
    stamp: Stamp | None
    """The stamp of the applied write (None when skipped)."""
    competing_version: int
    """The newest version the primary held for the sender (0 if none)."""
    verified: bool
    """False when the primary no longer remembers tombstones as old as the horizon."""


class PartialReconcileError(StoreUnavailableError):
    """The primary became unreachable part way through `reconcile`.

    `done` holds the outcomes of the entries that were applied (or skipped) before the
    failure; every other entry may or may not have reached the primary.
    """

    def __init__(self, message: str, done: list[ReconcileOutcome]) -> None:
        super().__init__(message)
        self.done = done


Horizon = Mapping[str, tuple[str, int]]
"""Per partition of the primary (bucket): the epoch and the highest version seen there."""


@runtime_checkable
class ReconcilingStore(Protocol):
    """What a primary offers so an outage's writes can be merged back by version."""

    def horizon(self) -> Horizon:
        """The newest state this client has seen; a write after it is newer than the outage."""

    async def reconcile(
        self, entries: Sequence[JournalEntry], horizon: Horizon
    ) -> list[ReconcileOutcome]:
        """Apply each entry unless the primary holds a write for that sender newer than
        `horizon`; the primary's newer write wins."""


def supports_claiming(store: object) -> bool:
    """True if `store` offers the batch claim path."""
    return isinstance(store, ClaimingStore)


def supports_reconcile(store: object) -> bool:
    """True if `store` can merge an outage's writes by version."""
    return isinstance(store, ReconcilingStore)
