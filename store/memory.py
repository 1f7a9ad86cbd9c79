"""`InMemoryTimerStore`: the default store, and the fallback's memory while Redis is down.

Everything lives in this process, so timers are lost on restart, as the documentation says.
Each method runs without awaiting, which makes it atomic on the event loop: concurrent callers
in one process can never both claim a timer.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sortedcontainers import SortedList

from store.base import SessionTimerStore
from store.capabilities import CancelResult, Claim, ClaimBatch, Stamp
from store.endpoint import EndpointConfig
from store.timer import SessionTimer
from store.validation import check_id, check_limit, check_time, encode_metadata


@dataclass(frozen=True)
class _Entry:
    timer: SessionTimer
    stamp: Stamp


@dataclass
class _Lease:
    claim: Claim
    until: float


class InMemoryTimerStore(SessionTimerStore):
    """Timers in a dict, ordered for expiry by a sorted list; no configuration needed.

    `instance_prefix` makes instance and fire ids reproducible (the simulator passes one); by
    default it is random, so ids of two processes never collide. `origin` labels the stamps
    ("fallback" when this store holds an outage's writes).
    """

    def __init__(
        self,
        endpoint_config: EndpointConfig | None = None,
        *,
        instance_prefix: str | None = None,
        origin: str = "memory",
    ) -> None:
        super().__init__(endpoint_config)
        self.origin = origin
        self._prefix = instance_prefix or f"m{secrets.token_hex(4)}"
        self._entries: dict[str, _Entry] = {}
        self._due: SortedList = SortedList()  # (scheduled_time, version, sender_id)
        self._leases: dict[str, _Lease] = {}
        self._lease_order: SortedList = SortedList()  # (until, version, fire_id)
        self._seq = 0

    def close(self) -> None:
        """Nothing to release; the timers stay readable until the object is dropped."""

    # -- the five documented methods -------------------------------------------------------

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
        check_id("sender_id", sender_id)
        if only_if_scheduled_time is None:
            return (await self.cancel_timer(sender_id)).existed
        expected = check_time("only_if_scheduled_time", only_if_scheduled_time)
        entry = self._entries.get(sender_id)
        if entry is None or entry.timer.scheduled_time != expected:
            return False
        self._remove(sender_id, entry)
        return True

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        check_id("sender_id", sender_id)
        entry = self._entries.get(sender_id)
        return None if entry is None else entry.timer

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        cutoff = check_time("cutoff_time", self._check_time_for_expired(cutoff_time))
        end = self._due.bisect_right((cutoff, math.inf))
        return [self._entries[sender].timer for _, _, sender in self._due[:end]]

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
        check_id("sender_id", sender_id)
        check_id("session_id", session_id, optional=True)
        when = check_time("scheduled_time", scheduled_time)
        metadata_json = encode_metadata(metadata)
        previous = self._entries.get(sender_id)
        if previous is not None:
            self._remove(sender_id, previous)
        stamp = self._next_stamp(instance)
        # Stored through JSON, so this store keeps exactly what Redis would (and no aliases).
        timer = SessionTimer.create_timer(sender_id, session_id, when, json.loads(metadata_json))
        self._entries[sender_id] = _Entry(timer, stamp)
        self._due.add((when, stamp.version, sender_id))
        return stamp

    async def cancel_timer(self, sender_id: str) -> CancelResult:
        check_id("sender_id", sender_id)
        entry = self._entries.get(sender_id)
        if entry is not None:
            self._remove(sender_id, entry)
        return CancelResult(existed=entry is not None, stamp=self._next_stamp())

    async def claim_due(self, now: float, *, limit: int, lease_until: float | None) -> ClaimBatch:
        now = check_time("now", now)
        limit = check_limit(limit)
        claims: list[Claim] = []
        lapsed_end = self._lease_order.bisect_right((now, math.inf))
        for key in list(self._lease_order[: min(lapsed_end, limit)]):
            lease = self._leases[key[2]]
            self._lease_order.remove(key)
            reclaimed = replace(lease.claim, attempt=lease.claim.attempt + 1)
            self._hold(reclaimed, lease_until)
            claims.append(reclaimed)
        due_end = self._due.bisect_right((now, math.inf))
        for _, _, sender in list(self._due[: min(due_end, limit - len(claims))]):
            entry = self._entries[sender]
            self._remove(sender, entry)
            claim = Claim(
                timer=entry.timer,
                fire_id=entry.stamp.instance,
                version=entry.stamp.version,
                attempt=1,
                leased=lease_until is not None,
                origin=self.origin,
            )
            self._hold(claim, lease_until)
            claims.append(claim)
        remaining = self._due.bisect_right((now, math.inf)) + self._lease_order.bisect_right(
            (now, math.inf)
        )
        oldest = self._due[0][0] if self._due and self._due[0][0] <= now else None
        return ClaimBatch(claims=claims, remaining_due=remaining, oldest_due=oldest)

    async def complete(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            lease = self._leases.pop(claim.fire_id, None)
            if lease is not None:
                self._lease_order.remove((lease.until, claim.version, claim.fire_id))

    # -- introspection for the fallback and tests -------------------------------------------

    def pending_count(self) -> int:
        """Armed timers (leased ones excluded)."""
        return len(self._entries)

    def snapshot(self) -> dict[str, SessionTimer]:
        """Every armed timer by sender, for reconciliation and tests."""
        return {sender: entry.timer for sender, entry in self._entries.items()}

    def held_claims(self) -> list[Claim]:
        """Claims whose lease was never released (their fire failed or is still running)."""
        return [lease.claim for lease in self._leases.values()]

    def forget(self, sender_id: str) -> None:
        """Drop the sender's timer and leases without a trace (it now lives elsewhere)."""
        entry = self._entries.get(sender_id)
        if entry is not None:
            self._remove(sender_id, entry)
        for lease in [
            lease for lease in self._leases.values() if lease.claim.timer.sender_id == sender_id
        ]:
            del self._leases[lease.claim.fire_id]
            self._lease_order.remove((lease.until, lease.claim.version, lease.claim.fire_id))

    def timer_of(self, sender_id: str) -> SessionTimer | None:
        """The sender's armed timer, without awaiting."""
        entry = self._entries.get(sender_id)
        return None if entry is None else entry.timer

    def stamp_of(self, sender_id: str) -> Stamp | None:
        """The stamp of the sender's armed timer, if any."""
        entry = self._entries.get(sender_id)
        return None if entry is None else entry.stamp

    # -- internals --------------------------------------------------------------------------

    def _next_stamp(self, instance: str | None = None) -> Stamp:
        self._seq += 1
        return Stamp(self._seq, instance or f"{self._prefix}:{self._seq}", self.origin)

    def _remove(self, sender_id: str, entry: _Entry) -> None:
        del self._entries[sender_id]
        self._due.remove((entry.timer.scheduled_time, entry.stamp.version, sender_id))

    def _hold(self, claim: Claim, lease_until: float | None) -> None:
        if lease_until is None:
            return
        self._leases[claim.fire_id] = _Lease(claim, lease_until)
        self._lease_order.add((lease_until, claim.version, claim.fire_id))
