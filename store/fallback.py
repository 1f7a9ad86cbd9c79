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
a user message, so an outage never adds a timeout to the user's reply. For two probe intervals
after merging back, a pod claims only timers due before its outage began, so the other pods of
a full outage can merge their newer writes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

import structlog

from store.base import SessionTimerStore
from store.capabilities import (
    CancelResult,
    Claim,
    ClaimBatch,
    Horizon,
    JournalEntry,
    PartialReconcileError,
    ReconcileOutcome,
    Stamp,
    supports_claiming,
    supports_reconcile,
)
from store.clock import Clock, LoopClock, SystemClock
from store.endpoint import EndpointConfig
from store.errors import StoreUnavailableError
from store.events import EventSink, null_sink
from store.fallback_stats import FallbackStats
from store.memory import InMemoryTimerStore
from store.options import ServiceSettings
from store.timer import SessionTimer

log = structlog.get_logger(__name__)

_REFUSING: ContextVar[bool] = ContextVar("timerlab_refusing_fallback", default=False)


@contextlib.contextmanager
def refusing_fallback() -> Iterator[None]:
    """Inside this block, a write that cannot reach the primary raises `StoreUnavailableError`
    instead of landing in memory.

    A pod behind a load balancer uses it to answer 503 and let the balancer try a peer that
    still reaches Redis: a write kept in one pod's memory is invisible to the others, so in a
    partial outage their copy of the timer would fire while the user is still talking. When
    no peer reaches Redis either (a full outage), the balancer retries without it.
    """
    token = _REFUSING.set(True)
    try:
        yield
    finally:
        _REFUSING.reset(token)


RECONCILE_CHUNK = 256
"""Journal entries merged per primary call batch; a failure keeps only the rest pending."""


@dataclass
class _Note:
    """Why a sender is in the outage journal, and the write of ours whose outcome is unknown."""

    reason: str
    unacked_time: float | None = None
    unacked_cancel: bool = False


@dataclass
class _Pending:
    """A journal entry taken out of memory and on its way to the primary."""

    entry: JournalEntry
    from_instance: str | None


class FallbackTimerStore(SessionTimerStore):
    """A primary store with an in-memory stand-in for its outages.

    `reconcile=False` switches the merge off (the harness's deliberately broken stack uses it
    to prove the checker catches dropped timers). `clock` is the wall clock that dates an
    outage; `pacing` is the monotonic clock that paces probes and the hold-back after an
    outage (by default the event loop's: a stepped wall clock must not postpone the probe that
    ends an outage, swarm seed 1020).
    """

    def __init__(
        self,
        primary: SessionTimerStore,
        *,
        endpoint_config: EndpointConfig | None = None,
        clock: Clock | None = None,
        pacing: Clock | None = None,
        probe_interval: float | None = None,
        reconcile: bool = True,
        sink: EventSink = null_sink,
        memory_prefix: str | None = None,
    ) -> None:
        config = (
            endpoint_config
            if endpoint_config is not None
            else getattr(primary, "endpoint_config", None)
        )
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
        self._pacing = pacing or LoopClock()
        self._memory_prefix = memory_prefix
        self._id_prefix = memory_prefix or f"f{secrets.token_hex(4)}"
        self._ids = itertools.count(1)
        self._outages = itertools.count(1)
        self._state = "primary"
        self._memory: InMemoryTimerStore | None = None
        self._journal: dict[str, _Note] = {}
        self._pending: dict[str, _Pending] = {}
        self._unreleased: list[Claim] = []
        self._own: dict[str, int] = {}
        self._horizon: Horizon = {}
        self._since = 0.0
        """Wall time the outage began: timers due before it are claimed during the hold-back."""
        self._began = 0.0
        self._hold_until = 0.0
        self._next_probe = 0.0
        self._merge_began = 0.0
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
        memory = self._memory
        return memory.pending_count() + len(memory.held_claims()) + len(self._pending)

    def fallback_instances(self) -> list[str]:
        """Instance ids of the timers only this process holds (what a crash would lose)."""
        if self._memory is None:
            return []
        memory = self._memory
        held = [memory.stamp_of(sender) for sender in memory.snapshot()]
        ids = [stamp.instance for stamp in held if stamp is not None]
        ids += [claim.fire_id for claim in memory.held_claims()]
        ids += [item.from_instance for item in self._pending.values() if item.from_instance]
        return sorted(ids)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        if self.fallback_pending():
            log.error(
                "timer_store.fallback.closed_with_pending",
                pending=self.fallback_pending(),
                hint="call drain() first so a rolling deploy loses nothing",
            )
        self.primary.close()

    async def aclose(self) -> None:
        """Async close of the primary, for callers that can await."""
        aclose = getattr(self.primary, "aclose", None)
        if aclose is None:
            self.close()
        else:
            await aclose()

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
        *,
        instance: str | None = None,
    ) -> Stamp:
        # One id for this write wherever it lands: if the primary times out and the write
        # lands there anyway, it and its memory copy are one instance with one fire id.
        instance = instance or self._next_instance()
        unacked: float | None = None
        if self._state != "fallback":
            try:
                if supports_claiming(self.primary):
                    stamp: Stamp = await self.primary.write_timer(  # type: ignore[attr-defined]
                        sender_id, session_id, scheduled_time, metadata, instance=instance
                    )
                    if self._state == "reconciling":
                        self._remember_own(sender_id, stamp.version)
                    return stamp
                await self.primary.store_timer(sender_id, session_id, scheduled_time, metadata)
                return Stamp(0, f"{sender_id}@{scheduled_time!r}", "primary")
            except StoreUnavailableError as exc:
                self._activate(exc)
                unacked = float(scheduled_time)
                self._unacknowledged(sender_id, "schedule", scheduled_time)
                if _REFUSING.get():
                    raise
        elif _REFUSING.get():
            raise StoreUnavailableError("the fallback is active: write refused, try a peer")
        stamp = await self._mem().write_timer(
            sender_id, session_id, scheduled_time, metadata, instance=instance
        )
        self._note(sender_id, "armed", unacked_time=unacked)
        return stamp

    async def cancel_timer(self, sender_id: str) -> CancelResult:
        unacked = False
        if self._state != "fallback":
            try:
                if supports_claiming(self.primary):
                    result: CancelResult = await self.primary.cancel_timer(sender_id)  # type: ignore[attr-defined]
                    if self._state == "reconciling":
                        self._remember_own(sender_id, result.stamp.version)
                    return result
                existed = await self.primary.delete_timer(sender_id)
                return CancelResult(existed, Stamp(0, f"{sender_id}@cancel", "primary"))
            except StoreUnavailableError as exc:
                self._activate(exc)
                unacked = True
                self._unacknowledged(sender_id, "cancel", None)
                if _REFUSING.get():
                    raise
        elif _REFUSING.get():
            raise StoreUnavailableError("the fallback is active: cancel refused, try a peer")
        result = await self._mem().cancel_timer(sender_id)
        self._note(sender_id, "cancelled", unacked_cancel=unacked)
        return result

    async def claim_due(self, now: float, *, limit: int, lease_until: float | None) -> ClaimBatch:
        await self._probe_and_merge()
        if self._state != "fallback" and supports_claiming(self.primary):
            try:
                return await self.primary.claim_due(  # type: ignore[attr-defined, no-any-return]
                    self._held_back(now), limit=limit, lease_until=lease_until
                )
            except StoreUnavailableError as exc:
                self._activate(exc)
                # A claim that timed out may still run: its timers then sit leased until
                # `lease_until` and are re-claimed after it, late but not lost.
                self.sink("write_unacknowledged", op="claim", now=now, lease_until=lease_until)
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
        if not theirs or not supports_claiming(self.primary):
            return
        if self._state == "fallback":
            self._unreleased.extend(theirs)
            return
        try:
            await self.primary.complete(theirs)  # type: ignore[attr-defined]
        except StoreUnavailableError as exc:
            # Released when the primary is back; if the lease lapses first, another pod
            # re-fires with the same fire id: a duplicate the receiver drops, never a loss.
            self._unreleased.extend(theirs)
            self._activate(exc)

    # -- internals --------------------------------------------------------------------------

    def _next_instance(self) -> str:
        return f"{self._id_prefix}:{next(self._ids)}"

    def _mem(self) -> InMemoryTimerStore:
        assert self._memory is not None, "fallback memory used before activation"
        return self._memory

    def _activate(self, exc: BaseException) -> None:
        if self._state == "fallback":
            return
        resumed = self._state == "reconciling"
        self._state = "fallback"
        self._next_probe = self._pacing.now() + self.probe_interval
        if resumed:  # the primary failed again while merging: same outage, keep the journal
            self._report_limbo()
            return
        self._since = self._clock.now()
        self._began = self._pacing.now()
        self._own = {}
        outage = next(self._outages)
        self._memory = InMemoryTimerStore(
            instance_prefix=f"{self._memory_prefix or 'fb'}.{outage}", origin="fallback"
        )
        self._horizon = dict(self.primary.horizon()) if supports_reconcile(self.primary) else {}  # type: ignore[attr-defined]
        self.stats.activations += 1
        self.stats.outage = {"applied": 0, "skipped": 0, "unverified": 0}
        log.warning("timer_store.fallback.activated", reason=str(exc), outage=outage)
        self.sink("fallback_activated", reason=str(exc), outage=outage)

    def _report_limbo(self) -> None:
        """Name the timers a failed merge left in limbo: out of memory, maybe not in the
        primary, unfired until the next merge (the price of never firing one twice)."""
        limbo = sorted(p.from_instance for p in self._pending.values() if p.from_instance)
        if limbo:
            elapsed = max(0.0, self._clock.now() - self._merge_began)
            log.warning("timer_store.fallback.merge_interrupted", timers=len(limbo))
            self.sink("merge_interrupted", instances=limbo, elapsed=elapsed)

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
        now = self._pacing.now()
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
            self._merge_began = self._clock.now()
            log.info("timer_store.fallback.probe_succeeded", journal=len(self._journal))
            try:
                await self._release_leases()
                await self._merge()
            except StoreUnavailableError as exc:
                self._activate(exc)
                return
            if self._state == "reconciling":  # not failed again meanwhile
                self._deactivate()

    async def _release_leases(self) -> None:
        """Release the leases of fires that finished while the primary was unreachable."""
        if self._unreleased:
            await self.primary.complete(self._unreleased)  # type: ignore[attr-defined]
            self._unreleased.clear()

    async def _merge(self) -> None:
        """Push the outage's final states into the primary, one chunk at a time.

        An entry leaves memory *before* it is sent: from then on only the primary may fire
        it, so a merge that fails half way can delay a timer but never fire it twice. Entries
        sent by a failed attempt are retried as possibly-landed writes of our own.
        """
        memory = self._mem()
        while self._state == "reconciling":
            for sender in list(itertools.islice(self._journal, RECONCILE_CHUNK)):
                stamp = memory.stamp_of(sender)
                self._pending[sender] = _Pending(
                    self._entry(sender), None if stamp is None else stamp.instance
                )
                del self._journal[sender]
                memory.forget(sender)
            if not self._pending:
                return
            chunk = list(itertools.islice(self._pending.values(), RECONCILE_CHUNK))
            started = self._pacing.now()
            try:
                outcomes = await self._apply([item.entry for item in chunk])
            except PartialReconcileError as exc:
                self._settle(exc.done, self._pacing.now() - started)
                self._mark_in_doubt()
                raise
            except StoreUnavailableError:
                self._mark_in_doubt()
                raise
            self._settle(outcomes, self._pacing.now() - started)

    async def _apply(self, entries: list[JournalEntry]) -> list[ReconcileOutcome]:
        if not self.reconcile_enabled:
            for entry in entries:
                self.sink("reconcile_dropped", sender_id=entry.sender_id)
            return [ReconcileOutcome(e.sender_id, False, None, 0, verified=False) for e in entries]
        if supports_reconcile(self.primary):
            return await self.primary.reconcile(entries, self._horizon)  # type: ignore[attr-defined, no-any-return]
        return [await self._replay(entry) for entry in entries]

    def _settle(self, outcomes: Sequence[ReconcileOutcome], elapsed: float) -> None:
        """Take the merged entries off the pending list; `elapsed` is how long the call that
        merged them took (each was applied at some point of it)."""
        for outcome in outcomes:
            item = self._pending.pop(outcome.sender_id)
            if outcome.stamp is not None:
                self._remember_own(outcome.sender_id, outcome.stamp.version)
            if self.reconcile_enabled:
                self._record(item, outcome, elapsed)

    def _remember_own(self, sender_id: str, version: int) -> None:
        """A version this pod put into the primary during this outage's merge: if the merge
        is interrupted and retried, that write is recognised as ours, never as newer."""
        self._own[sender_id] = max(version, self._own.get(sender_id, 0))

    def _mark_in_doubt(self) -> None:
        """What a failed attempt sent may have landed: it is ours if the primary has it."""
        for item in self._pending.values():
            timer = item.entry.timer
            item.entry = replace(
                item.entry,
                unacked_time=None if timer is None else timer.scheduled_time,
                unacked_cancel=timer is None,
            )

    def _entry(self, sender_id: str) -> JournalEntry:
        memory = self._mem()
        note = self._journal[sender_id]
        timer = memory.timer_of(sender_id)
        if timer is None:  # a fire that failed and still holds its lease: re-arm it
            held = [c.timer for c in memory.held_claims() if c.timer.sender_id == sender_id]
            timer = held[-1] if held else None
        reason = note.reason if timer is None else "armed"
        stamp = memory.stamp_of(sender_id)
        return JournalEntry(
            sender_id,
            timer,
            reason,
            instance=None if stamp is None or timer is None else stamp.instance,
            unacked_time=note.unacked_time,
            unacked_cancel=note.unacked_cancel,
            own_version=self._own.get(sender_id, 0),
        )

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

    def _record(self, item: _Pending, outcome: ReconcileOutcome, elapsed: float) -> None:
        entry = item.entry
        self.stats.count("applied" if outcome.applied else "skipped")
        if not outcome.verified:
            self.stats.count("unverified")
        self.sink(
            "reconciled",
            sender_id=entry.sender_id,
            reason=entry.reason,
            applied=outcome.applied,
            from_instance=item.from_instance,
            instance=None if outcome.stamp is None else outcome.stamp.instance,
            version=None if outcome.stamp is None else outcome.stamp.version,
            scheduled_time=None if entry.timer is None else entry.timer.scheduled_time,
            competing_version=outcome.competing_version,
            verified=outcome.verified,
            elapsed=elapsed,
        )

    def _held_back(self, now: float) -> float:
        """The cutoff to claim with, just after an outage.

        Other pods that lost Redis too merge their outage writes on their own probe schedule.
        Until they have had the time to (two probe intervals), this pod only claims timers
        that were due before the outage began: one that came due during it may have been
        re-armed in another pod's memory, and firing it now would be a stale fire.
        """
        return min(now, self._since) if self._pacing.now() < self._hold_until else now

    def _deactivate(self) -> None:
        now = self._pacing.now()
        duration = now - self._began
        self._hold_until = now + 2 * self.probe_interval
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
