"""`TimerService`: one inactivity timer per conversation, claimed and fired exactly once.

Sans-I/O: the service asks its `Clock` for the time and never sleeps, so the asyncio runner
(`store.runner`) drives it in a pod and SimPy drives the very same code in the simulator.

Two claim paths, picked once from the store's capabilities:

- A `ClaimingStore` (the reference stores) claims a batch per call. With
  `delivery: at_least_once` (the default) each claim holds a lease; the lease is released after
  the callback returns, so a pod that dies between claim and callback leaves the timer to be
  re-claimed, once the lease lapses, by another pod, with the same fire id. A receiver that
  drops repeated fire ids therefore sees every expiry exactly once. With
  `delivery: at_most_once` a claim deletes the timer, as Rasa does: a crash before the callback
  loses that expiry, and nothing ever fires twice.
- Any other store is used through its five documented methods: `get_expired_timers`, then a
  conditional `delete_timer` per timer. That cannot lease, so delivery is at-most-once, and the
  service says so in its log at start.

The callback is `async (sender_id, session_id, scheduled_time)`; if it also accepts a
`fire_id` keyword, it gets the stable fire id too.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from store.base import SessionTimerStore
from store.capabilities import Claim, ClaimBatch, Stamp, supports_claiming
from store.clock import Clock
from store.errors import InvalidTimerType, InvalidTimerValue, StoreContractError, is_unavailable
from store.events import EventSink, metadata_digest, null_sink
from store.options import ServiceSettings
from store.timer import SessionTimer

log = structlog.get_logger(__name__)

FireCallback = Callable[..., Awaitable[Any]]
"""`async (sender_id, session_id, scheduled_time[, fire_id=...])`."""

FIRE_CONCURRENCY = 64
"""Callbacks of one poll that may run at once (a callback usually awaits the tracker store)."""


@dataclass(frozen=True)
class Scheduled:
    """What `schedule_timer` armed."""

    sender_id: str
    scheduled_time: float
    stamp: Stamp


@dataclass(frozen=True)
class Fired:
    """One callback run: the claim and how it ended ("ok", "error", "timeout" or "skipped")."""

    claim: Claim
    result: str


@dataclass(frozen=True)
class PollResult:
    """What one poll did, and what is still waiting (to pace a backlog, and for the SLI)."""

    fired: list[Fired]
    remaining_due: int
    oldest_due: float | None


class TimerService:
    """Schedule, cancel, poll and recover conversation timers over any timer store."""

    def __init__(
        self,
        store: SessionTimerStore,
        clock: Clock,
        fire: FireCallback,
        *,
        settings: ServiceSettings | None = None,
        sink: EventSink = null_sink,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or ServiceSettings()
        self.sink = sink
        self._listening = sink is not null_sink
        self._fire = fire
        self._pass_fire_id = _accepts_fire_id(fire)
        self._claiming = supports_claiming(store)
        self._gate = asyncio.Semaphore(FIRE_CONCURRENCY)
        self.delivery = self.settings.delivery if self._claiming else "at_most_once"
        if not self._claiming:
            log.warning(
                "timer_store.service.at_most_once",
                store=type(store).__name__,
                reason="the store offers only the five documented methods, so claims cannot "
                "lease: a crash between claim and callback loses that expiry",
            )

    # -- conversation API -------------------------------------------------------------------

    async def schedule_timer(
        self,
        sender_id: str,
        session_id: str | None,
        timeout_seconds: float,
        metadata: dict[str, Any] | None = None,
    ) -> Scheduled:
        """Arm (or re-arm) the conversation's timer `timeout_seconds` from now."""
        timeout = _check_timeout(timeout_seconds)
        started = self.clock.now()
        when = started + timeout
        try:
            if self._claiming:
                stamp: Stamp = await self.store.write_timer(  # type: ignore[attr-defined]
                    sender_id, session_id, when, metadata
                )
            else:
                await self.store.store_timer(sender_id, session_id, when, metadata)
                stamp = Stamp(0, _plain_instance(sender_id, when), "custom")
        except Exception as exc:  # the user's write failed: say so, then let the caller know
            self._call_failed("schedule", exc, started, sender_id, scheduled_time=when)
            raise
        if self._listening:
            self.sink(
                "schedule",
                sender_id=sender_id,
                session_id=session_id,
                scheduled_time=when,
                timeout=timeout,
                version=stamp.version,
                instance=stamp.instance,
                origin=stamp.origin,
                elapsed=self.clock.now() - started,
                metadata=metadata_digest(metadata),
            )
        return Scheduled(sender_id, when, stamp)

    async def cancel_timer(self, sender_id: str) -> bool:
        """Cancel the conversation's timer; True if one was armed."""
        started = self.clock.now()
        try:
            if self._claiming:
                result = await self.store.cancel_timer(sender_id)  # type: ignore[attr-defined]
                existed, stamp = result.existed, result.stamp
            else:
                existed = _boolean("delete_timer", await self.store.delete_timer(sender_id))
                stamp = Stamp(0, f"{sender_id}@cancel", "custom")
        except Exception as exc:
            self._call_failed("cancel", exc, started, sender_id)
            raise
        self.sink(
            "cancel",
            sender_id=sender_id,
            existed=existed,
            version=stamp.version,
            instance=stamp.instance,
            origin=stamp.origin,
            elapsed=self.clock.now() - started,
        )
        return bool(existed)

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        """The conversation's armed timer, if any."""
        return await self.store.get_timer(sender_id)

    # -- expiry -----------------------------------------------------------------------------

    async def poll_once(self, limit: int | None = None) -> PollResult:
        """Claim what is due now (at most `limit`, default `batch_size`) and fire it."""
        limit = limit or self.settings.batch_size
        now = self.clock.now()
        failure: Exception | None = None
        try:
            if self._claiming:
                batch = await self._claim_batch(now, limit)
                failure = batch.failure
            else:
                batch, failure = await self._claim_one_by_one(now, limit)
        except Exception as exc:
            self._poll_failed("claim", exc)
            raise
        outcomes = await asyncio.gather(*(self._run(claim) for claim in batch.claims))
        fired = [Fired(claim, result) for claim, result in zip(batch.claims, outcomes, strict=True)]
        finished = [f.claim for f in fired if self._finished(f)]
        if finished and self._claiming:
            try:
                await self.store.complete(finished)  # type: ignore[attr-defined]
            except Exception as exc:
                self._poll_failed("complete", exc)
                raise
        if failure is not None:  # what was claimed before it has fired; now the runner knows
            self._poll_failed("claim", failure)
            raise failure
        return PollResult(fired, batch.remaining_due, batch.oldest_due)

    async def recover(self) -> PollResult:
        """One start-up batch: fire timers that expired while no pod ran.

        The driver calls this until `remaining_due` is 0, pacing the calls at `recovery_rate`
        so a long outage ends without a stampede (the service itself never sleeps).
        """
        result = await self.poll_once(self.settings.batch_size)
        log.debug(
            "timer_store.service.recovery_batch",
            fired=len(result.fired),
            remaining=result.remaining_due,
        )
        self.sink("recovery", fired=len(result.fired), remaining=result.remaining_due)
        return result

    # -- internals --------------------------------------------------------------------------

    async def _claim_batch(self, now: float, limit: int) -> ClaimBatch:
        lease_until = (
            now + self.settings.lease_seconds if self.delivery == "at_least_once" else None
        )
        batch: ClaimBatch = await self.store.claim_due(  # type: ignore[attr-defined]
            now, limit=limit, lease_until=lease_until
        )
        elapsed = self.clock.now() - now
        for claim in batch.claims:
            self._event("claim", claim, elapsed=elapsed, batch=len(batch.claims))
        return batch

    async def _claim_one_by_one(
        self, now: float, limit: int
    ) -> tuple[ClaimBatch, Exception | None]:
        """Claim through the documented methods: list, then conditional delete each.

        A delete that fails (the store went away mid-batch) ends the batch, and comes back as
        the error: the timers already deleted are this pod's alone, so they fire first.
        """
        expired = _timers(await self.store.get_expired_timers(now))
        expired.sort(key=lambda timer: timer.scheduled_time)
        claims: list[Claim] = []
        batch = expired[:limit]
        for timer in batch:
            started = self.clock.now()
            try:
                deleted = _boolean(
                    "delete_timer",
                    await self.store.delete_timer(timer.sender_id, timer.scheduled_time),
                )
            except Exception as exc:
                remaining = len(expired) - len(claims)
                return ClaimBatch(claims, remaining, timer.scheduled_time), exc
            if deleted:
                instance = _plain_instance(timer.sender_id, timer.scheduled_time)
                claim = Claim(timer, instance, 0, 1, leased=False, origin="custom")
                self._event("claim", claim, elapsed=self.clock.now() - started, batch=len(batch))
                claims.append(claim)
        remaining = max(0, len(expired) - limit)
        oldest = expired[limit].scheduled_time if remaining else None
        return ClaimBatch(claims, remaining, oldest), None

    async def _run(self, claim: Claim) -> str:
        """Run one callback (or skip it by policy) and record how it ended."""
        timer = claim.timer
        skip_after = self.settings.skip_older_than
        if skip_after is not None and self.clock.now() - timer.scheduled_time > skip_after:
            self._event("skip", claim, older_than=skip_after)
            return "skipped"
        async with self._gate:
            self._event("fire", claim, outcome="fire_start")
            try:
                kwargs = {"fire_id": claim.fire_id} if self._pass_fire_id else {}
                await asyncio.wait_for(
                    self._fire(timer.sender_id, timer.session_id, timer.scheduled_time, **kwargs),
                    self.settings.fire_timeout,
                )
                result = "ok"
            except TimeoutError:
                result = "timeout"
            except Exception as exc:  # the callback is user code: record, never crash the poll
                log.error("timer_store.service.fire_failed", fire_id=claim.fire_id, error=str(exc))
                result = "error"
            self._event("fire", claim, outcome="fire_done", result=result)
        return result

    def _finished(self, fired: Fired) -> bool:
        """Release the claim unless the fire failed and a lease will retry it."""
        if fired.result in {"ok", "skipped"} or not fired.claim.leased:
            return True
        if fired.claim.attempt >= self.settings.max_fire_attempts:
            log.error(
                "timer_store.service.fire_gave_up",
                fire_id=fired.claim.fire_id,
                attempts=fired.claim.attempt,
            )
            self._event("give_up", fired.claim, result=fired.result)
            return True
        return False

    def _call_failed(
        self, op: str, exc: Exception, started: float, sender_id: str, **fields: Any
    ) -> None:
        """A conversation's write failed: the user was left without the timer they asked for
        (or with one they cancelled). Connectivity errors are expected in an outage; anything
        else is the store breaking its contract."""
        log.warning("timer_store.service.write_failed", op=op, sender_id=sender_id, error=repr(exc))
        self.sink(
            "call_failed",
            op=op,
            sender_id=sender_id,
            error=type(exc).__name__,
            message=str(exc)[:300],
            unavailable=is_unavailable(exc),
            elapsed=self.clock.now() - started,
            **fields,
        )

    def _poll_failed(self, op: str, exc: Exception) -> None:
        """A poll failed. An outage is the runner's to ride out; anything else is recorded as
        the store breaking its contract (an attribute it lacks, a wrong type, a bug)."""
        if not is_unavailable(exc):
            self.sink("store_error", op=op, error=type(exc).__name__, message=str(exc)[:300])

    def _event(self, kind: str, claim: Claim, **fields: Any) -> None:
        if not self._listening:
            return
        timer = claim.timer
        self.sink(
            kind,
            sender_id=timer.sender_id,
            session_id=timer.session_id,
            scheduled_time=timer.scheduled_time,
            fire_id=claim.fire_id,
            version=claim.version,
            attempt=claim.attempt,
            origin=claim.origin,
            metadata=metadata_digest(timer.metadata),
            **fields,
        )


def _timers(value: object) -> list[SessionTimer]:
    """What `get_expired_timers` returned, checked: a list of timers, as the contract says."""
    if not isinstance(value, list | tuple):
        raise StoreContractError(
            "get_expired_timers", f"returned a {type(value).__name__}, not a list of timers"
        )
    for timer in value:
        if not all(
            hasattr(timer, name)
            for name in ("sender_id", "session_id", "scheduled_time", "metadata")
        ):
            raise StoreContractError(
                "get_expired_timers", f"returned a {type(timer).__name__}, not a SessionTimer"
            )
    return list(value)


def _boolean(method: str, value: object) -> bool:
    """A `delete_timer` result: True or False, as the contract says (not None, not 1)."""
    if not isinstance(value, bool):
        raise StoreContractError(method, f"returned {value!r}, not True or False")
    return value


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTimerType("timeout_seconds", f"must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidTimerValue("timeout_seconds", f"must be positive and finite, not {value!r}")
    return float(value)


def _plain_instance(sender_id: str, scheduled_time: float) -> str:
    """The instance id of a write to a store without versions: sender and exact time."""
    return f"{sender_id}@{scheduled_time!r}"


def _accepts_fire_id(callback: FireCallback) -> bool:
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "fire_id" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
