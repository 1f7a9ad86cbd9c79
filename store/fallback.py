"""`FallbackTimerStore`: keep serving from memory while the primary store is unreachable.

States: `primary` (normal), `fallback` (the primary failed; memory serves), `reconciling` (the
primary answered a probe; the outage's writes are being merged back). The design goals:

- Activate on the first `StoreUnavailableError`, once per outage (never flap: while in fallback
  every call goes straight to memory, and only the poll path probes the primary).
- Lose nothing: every sender written during the outage is journaled; on recovery its final
  state (armed, cancelled or fired) is merged into the primary before the next primary poll.
- Let the primary's newer writes win: a pod cut off alone cannot order its writes against the
  other pods' by clock, so the primary decides by version (`ReconcilingStore`). A write of this
  pod that timed out as the outage began may still have landed; it is recognised as our own.
- Count what cannot be saved: timers held only in memory die with the process.

Probing happens only in the poll path (`claim_due`, `get_expired_timers`), never while handling
a user message, so an outage never adds a timeout to the user's reply.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from store.base import SessionTimerStore
from store.capabilities import (
    CancelResult,
    Claim,
    ClaimBatch,
    Horizon,
    JournalEntry,
    ReconcileOutcome,
    Stamp,
    supports_claiming,
    supports_reconcile,
)
from store.clock import Clock, SystemClock
from store.errors import StoreUnavailableError
from store.events import EventSink, null_sink
from store.memory import InMemoryTimerStore
from store.options import ServiceSettings
from store.timer import SessionTimer

if TYPE_CHECKING:
    from store.config import EndpointConfig

log = structlog.get_logger(__name__)

RECONCILE_CHUNK = 256
"""Journal entries merged per primary call batch; a failure keeps only the rest pending."""


@dataclass
class _Note:
    """Why a sender is in the outage journal, and the write of ours whose outcome is unknown."""

    reason: str
    unacked_time: float | None = None
    unacked_cancel: bool = False


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


class FallbackTimerStore(SessionTimerStore):
    """A primary store with an in-memory stand-in for its outages.

    `reconcile=False` switches the merge off (the harness's deliberately broken stack uses it
    to prove the checker catches dropped timers). `clock` paces the probes.
    """

    def __init__(
        self,
        primary: SessionTimerStore,
        *,
        endpoint_config: EndpointConfig | None = None,
        clock: Clock | None = None,
        probe_interval: float | None = None,
        reconcile: bool = True,
        sink: EventSink = null_sink,
        memory_prefix: str | None = None,
    ) -> None:
        config = endpoint_config if endpoint_config is not None else primary.endpoint_config
        super().__init__(config)
        settings = ServiceSettings.from_mapping(config.kwargs if config is not None else {})
        self.primary = primary
        self.probe_interval = (
            probe_interval if probe_interval is not None else (settings.probe_interval)
        )
        self.reconcile_enabled = reconcile
        self.sink = sink
        self.stats = FallbackStats()
        self._clock = clock or SystemClock()
        self._memory_prefix = memory_prefix
        self._outages = itertools.count(1)
        self._state = "primary"
        self._memory: InMemoryTimerStore | None = None
        self._journal: dict[str, _Note] = {}
        self._horizon: Horizon = {}
        self._since = 0.0
        self._next_probe = 0.0
        self._merge_lock = asyncio.Lock()

    # -- observable state -------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while the fallback serves (including while it merges back)."""
        return self._state != "primary"

    @property
    def state(self) -> str:
        """ "primary", "fallback" or "reconciling"."""
        return self._state

    def fallback_pending(self) -> int:
        """Timers that exist only in this process's memory right now (lost if it dies)."""
        if self._memory is None:
            return 0
        return self._memory.pending_count() + len(self._memory.held_claims())

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        if self.fallback_pending():
            log.error(
                "timer_store.fallback.closed_with_pending",
                pending=self.fallback_pending(),
                hint="call drain() first so a rolling deploy loses nothing",
            )
        self.primary.close()

    async def drain(self) -> bool:
        """Merge the outage's writes back if the primary answers; True when nothing is left."""
        if self._state == "primary":
            return True
        await self._probe_and_merge(force=True)
        if self._state != "primary":
            log.error("timer_store.fallback.drain_failed", pending=self.fallback_pending())
        return self._state == "primary"

    # -- the five documented methods --------------------------------------------------------

    async def store_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        await self.write_timer(sender_id, session_id, scheduled_time, metadata)

    async def delete_timer(
        self, sender_id: str, only_if_scheduled_time: float | None = None
    ) -> bool:
        if only_if_scheduled_time is None:
            return (await self.cancel_timer(sender_id)).existed
        if self._state != "fallback":
            try:
                return await self.primary.delete_timer(sender_id, only_if_scheduled_time)
            except StoreUnavailableError as exc:
                self._activate(exc)
        memory = self._mem()
        deleted = await memory.delete_timer(sender_id, only_if_scheduled_time)
        if deleted:
            self._note(sender_id, "fired")
        return deleted

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        if self._state != "fallback":
            try:
                return await self.primary.get_timer(sender_id)
            except StoreUnavailableError as exc:
                self._activate(exc)
        return await self._mem().get_timer(sender_id)

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        await self._probe_and_merge()
        if self._state != "fallback":
            try:
                return await self.primary.get_expired_timers(cutoff_time)
            except StoreUnavailableError as exc:
                self._activate(exc)
        return await self._mem().get_expired_timers(cutoff_time)

    # -- ClaimingStore ----------------------------------------------------------------------

    async def write_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> Stamp:
        unacked: float | None = None
        if self._state != "fallback":
            try:
                if supports_claiming(self.primary):
                    return await self.primary.write_timer(  # type: ignore[attr-defined, no-any-return]
                        sender_id, session_id, scheduled_time, metadata
                    )
                await self.primary.store_timer(sender_id, session_id, scheduled_time, metadata)
                return Stamp(0, f"{sender_id}@{scheduled_time!r}", "primary")
            except StoreUnavailableError as exc:
                self._activate(exc)
                unacked = float(scheduled_time)
                self._unacknowledged(sender_id, "schedule", scheduled_time)
        stamp = await self._mem().write_timer(sender_id, session_id, scheduled_time, metadata)
        self._note(sender_id, "armed", unacked_time=unacked)
        return stamp

    async def cancel_timer(self, sender_id: str) -> CancelResult:
        unacked = False
        if self._state != "fallback":
            try:
                if supports_claiming(self.primary):
                    return await self.primary.cancel_timer(sender_id)  # type: ignore[attr-defined, no-any-return]
                existed = await self.primary.delete_timer(sender_id)
                return CancelResult(existed, Stamp(0, f"{sender_id}@cancel", "primary"))
            except StoreUnavailableError as exc:
                self._activate(exc)
                unacked = True
                self._unacknowledged(sender_id, "cancel", None)
        result = await self._mem().cancel_timer(sender_id)
        self._note(sender_id, "cancelled", unacked_cancel=unacked)
        return result

    async def claim_due(self, now: float, *, limit: int, lease_until: float | None) -> ClaimBatch:
        await self._probe_and_merge()
        if self._state != "fallback" and supports_claiming(self.primary):
            try:
                return await self.primary.claim_due(  # type: ignore[attr-defined, no-any-return]
                    now, limit=limit, lease_until=lease_until
                )
            except StoreUnavailableError as exc:
                self._activate(exc)
        if self._memory is None:
            return ClaimBatch([], 0, None)
        batch = await self._memory.claim_due(now, limit=limit, lease_until=lease_until)
        for claim in batch.claims:
            self._note(claim.timer.sender_id, "fired")
        return batch

    async def complete(self, claims: Sequence[Claim]) -> None:
        mine = [claim for claim in claims if claim.origin == "fallback"]
        theirs = [claim for claim in claims if claim.origin != "fallback"]
        if mine and self._memory is not None:
            await self._memory.complete(mine)
        if theirs and self._state != "fallback" and supports_claiming(self.primary):
            try:
                await self.primary.complete(theirs)  # type: ignore[attr-defined]
            except StoreUnavailableError as exc:
                # The leases lapse and another pod re-fires with the same fire id: a duplicate
                # the receiver drops, never a loss.
                self._activate(exc)

    # -- internals --------------------------------------------------------------------------

    def _mem(self) -> InMemoryTimerStore:
        assert self._memory is not None, "fallback memory used before activation"
        return self._memory

    def _activate(self, exc: BaseException) -> None:
        if self._state == "fallback":
            return
        now = self._clock.now()
        resumed = self._state == "reconciling"
        self._state = "fallback"
        self._next_probe = now + self.probe_interval
        if resumed:  # the primary failed again while merging: same outage, keep the journal
            return
        self._since = now
        outage = next(self._outages)
        self._memory = InMemoryTimerStore(
            instance_prefix=f"{self._memory_prefix or 'fb'}.{outage}", origin="fallback"
        )
        self._horizon = dict(self.primary.horizon()) if supports_reconcile(self.primary) else {}  # type: ignore[attr-defined]
        self.stats.activations += 1
        self.stats.outage = {"applied": 0, "skipped": 0, "unverified": 0}
        log.warning("timer_store.fallback.activated", reason=str(exc), outage=outage)
        self.sink("fallback_activated", reason=str(exc), outage=outage)

    def _note(self, sender_id: str, reason: str, **unacked: Any) -> None:
        note = self._journal.get(sender_id)
        if note is None:
            self._journal[sender_id] = _Note(reason, **unacked)
            self.stats.outage_writes += 1
            return
        note.reason = reason
        if unacked.get("unacked_time") is not None:
            note.unacked_time = unacked["unacked_time"]
        if unacked.get("unacked_cancel"):
            note.unacked_cancel = True

    def _unacknowledged(self, sender_id: str, op: str, scheduled_time: float | None) -> None:
        self.sink("write_unacknowledged", sender_id=sender_id, op=op, scheduled_time=scheduled_time)

    async def _probe_and_merge(self, *, force: bool = False) -> None:
        if self._state != "fallback":
            return
        now = self._clock.now()
        if not force and now < self._next_probe:
            return
        self._next_probe = now + self.probe_interval
        async with self._merge_lock:
            if self._state != "fallback":
                return
            try:
                await _probe(self.primary)
            except StoreUnavailableError:
                return
            self._state = "reconciling"
            log.info("timer_store.fallback.probe_succeeded", journal=len(self._journal))
            try:
                await self._merge()
            except StoreUnavailableError as exc:
                self._activate(exc)
                return
            if self._state == "reconciling":  # not failed again meanwhile
                self._deactivate()

    async def _merge(self) -> None:
        """Push the journal into the primary; entries leave the journal once merged."""
        while self._journal and self._state == "reconciling":
            senders = list(itertools.islice(self._journal, RECONCILE_CHUNK))
            entries = [self._entry(sender) for sender in senders]
            if not self.reconcile_enabled:
                for sender in senders:
                    self.sink("reconcile_dropped", sender_id=sender)
                outcomes: list[ReconcileOutcome] = []
            elif supports_reconcile(self.primary):
                outcomes = await self.primary.reconcile(entries, self._horizon)  # type: ignore[attr-defined]
            else:
                outcomes = [await self._replay(entry) for entry in entries]
            for entry, outcome in zip(entries, outcomes, strict=True):
                self._record(entry, outcome)
            for sender in senders:
                del self._journal[sender]

    def _entry(self, sender_id: str) -> JournalEntry:
        memory = self._mem()
        note = self._journal[sender_id]
        timer = memory.timer_of(sender_id)
        if timer is None:  # a fire that failed and still holds its lease: re-arm it
            held = [c.timer for c in memory.held_claims() if c.timer.sender_id == sender_id]
            timer = held[-1] if held else None
        reason = note.reason if timer is None else "armed"
        return JournalEntry(sender_id, timer, reason, note.unacked_time, note.unacked_cancel)

    async def _replay(self, entry: JournalEntry) -> ReconcileOutcome:
        """Merge into a primary without versions: the outage's last write wins."""
        if entry.timer is None:
            await self.primary.delete_timer(entry.sender_id)
        else:
            timer = entry.timer
            await self.primary.store_timer(
                timer.sender_id, timer.session_id, timer.scheduled_time, timer.metadata
            )
        return ReconcileOutcome(entry.sender_id, True, None, 0, verified=False)

    def _record(self, entry: JournalEntry, outcome: ReconcileOutcome) -> None:
        memory_stamp = self._mem().stamp_of(entry.sender_id)
        self.stats.count("applied" if outcome.applied else "skipped")
        if not outcome.verified:
            self.stats.count("unverified")
        self.sink(
            "reconciled",
            sender_id=entry.sender_id,
            reason=entry.reason,
            applied=outcome.applied,
            from_instance=None if memory_stamp is None else memory_stamp.instance,
            instance=None if outcome.stamp is None else outcome.stamp.instance,
            version=None if outcome.stamp is None else outcome.stamp.version,
            scheduled_time=None if entry.timer is None else entry.timer.scheduled_time,
            competing_version=outcome.competing_version,
            verified=outcome.verified,
        )

    def _deactivate(self) -> None:
        duration = self._clock.now() - self._since
        self._state = "primary"
        self._memory = None
        self.stats.deactivations += 1
        counts = dict(self.stats.outage)
        log.info("timer_store.fallback.deactivated", outage_seconds=round(duration, 3), **counts)
        self.sink("fallback_deactivated", outage_seconds=duration, **counts)


async def _probe(store: SessionTimerStore) -> None:
    ping = getattr(store, "ping", None)
    if ping is not None:
        await ping()
    else:
        await store.get_timer("timerlab-probe")
