"""`RedisTimerStore`: timers shared by every pod through Redis.

Every operation is one Lua script per bucket, so it is atomic and costs one round trip:
`store_timer` replaces and versions in one step, a conditional delete compares the exact stored
time, `get_expired_timers` reads a whole bucket's due timers at once, and `claim_due` claims a
batch under a lease. Connectivity failures surface as `StoreUnavailableError`, which is what
`FallbackTimerStore` reacts to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.exceptions as rexc
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError

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
)
from store.endpoint import EndpointConfig
from store.errors import StoreUnavailableError, redact
from store.events import EventSink, null_sink
from store.redis.clients import RedisClient, build_client, sentinel_probe
from store.redis.codec import decode_expired, decode_lease_entry, decode_record, encode_body
from store.redis.keys import KeyScheme
from store.redis.scripts import Scripts
from store.redis.settings import RedisSettings
from store.timer import SessionTimer
from store.validation import check_id, check_limit, check_time, encode_metadata

log = structlog.get_logger(__name__)

T = TypeVar("T")
CallObserver = Callable[[str, float, BaseException | None], None]
"""`(operation, seconds, error or None)`: one Redis call of a store."""

UNAVAILABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes refused connections, auth failures, sentinel lookups
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,  # a client still talking to a master that was demoted by a failover
    rexc.SlotNotCoveredError,
    rexc.RedisClusterException,  # no startup node reachable
    OSError,
    asyncio.TimeoutError,
)
"""Errors that mean "Redis cannot be reached now" rather than "this call is wrong"."""

PROBE_ERRORS: tuple[type[BaseException], ...] = (rexc.RedisError, *UNAVAILABLE)

_RECONCILE_CONCURRENCY = 32


class RedisTimerStore(SessionTimerStore):
    """The reference Redis store: standalone, cluster or sentinel, from `endpoint_config`.

    `client` injects a ready redis-py asyncio client (the simulator passes one bound to its
    embedded Redis); `rng` makes the epoch candidate reproducible. Both default to production
    behaviour.
    """

    origin = "redis"

    def __init__(
        self,
        endpoint_config: EndpointConfig | None = None,
        *,
        client: RedisClient | None = None,
        rng: random.Random | None = None,
        sink: EventSink = null_sink,
    ) -> None:
        super().__init__(endpoint_config)
        self.settings = RedisSettings.from_endpoint_config(endpoint_config)
        self.keys = KeyScheme(self.settings.key_prefix, self.settings.buckets)
        self.sink = sink
        self._injected = client
        self._closing: asyncio.Task[None] | None = None
        """Releasing the connections, started by `close()` in the loop that owns them."""
        self._bound: _Bound | None = None
        self._build_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closed = False
        # Instance ids need uniqueness, not secrecy: one seeded generator, not a syscall each.
        self._rng = rng or random.Random(secrets.randbits(64))
        self._epoch_base = f"{self._rng.getrandbits(48):012x}"
        self._seen: dict[int, tuple[str, int]] = {}
        self._rotation = 0
        self._diagnosed = False
        self.data_losses = 0
        """How many times this client saw Redis lose data (reset or rolled back)."""
        self.observe_call: CallObserver | None = None
        """Told of every Redis call: its operation, its duration, its error if any (the
        metrics set it; nothing is timed while it is None)."""

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections; safe inside a running loop, after it ended, and twice."""
        if self._closed:
            return
        self._closed = True
        bound, self._bound = self._bound, None
        if bound is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is bound.loop:
            # Let the loop finish closing; keep a reference so the task is not collected. An
            # injected client is its owner's to close: only the direct lane goes back to it.
            release = bound.scripts.runner.release()
            closing = release if self._injected is not None else _then(release, bound.client)
            self._closing = loop.create_task(closing)
        # After the owning loop ended its sockets are gone with it; nothing left to await.

    async def aclose(self) -> None:
        """Async close, for callers that can await (tests, the runner): returns once the
        connections are released."""
        self.close()
        if self._closing is not None:
            with contextlib.suppress(*UNAVAILABLE, RuntimeError):
                await self._closing

    async def ping(self) -> None:
        """Raise `StoreUnavailableError` unless Redis answers (the fallback's probe)."""
        await self._call(lambda _: self._client().ping(), "ping")

    async def check(self) -> list[str]:
        """Start-up checks: reachability, and eviction that would drop timers silently.

        Returns the warnings it logged. A Redis whose `maxmemory-policy` evicts keys can lose
        timers without any error, so this is loud about it.
        """
        await self.ping()
        warnings: list[str] = []
        try:
            config = await self._call(
                lambda _: self._client().config_get("maxmemory-policy"), "config_get"
            )
        except rexc.ResponseError:  # CONFIG may be forbidden by ACL or renamed: not our call
            return warnings
        values = config.values() if isinstance(config, dict) else []
        for policy in {str(v) for v in values}:
            if policy != "noeviction":
                log.warning("timer_store.redis.eviction_risk", maxmemory_policy=policy)
                warnings.append(f"maxmemory-policy is {policy}: Redis may evict timers")
        return warnings

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
        check_id("sender_id", sender_id)
        if only_if_scheduled_time is None:
            return (await self.cancel_timer(sender_id)).existed
        expected = check_time("only_if_scheduled_time", only_if_scheduled_time)
        bucket = self.keys.keys(self.keys.bucket_of(sender_id))
        deleted = await self._call(
            lambda s: s.delete_if(keys=[bucket.due, bucket.rec], args=[sender_id, repr(expected)]),
            "delete_if",
        )
        return bool(deleted)

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        check_id("sender_id", sender_id)
        bucket = self.keys.keys(self.keys.bucket_of(sender_id))
        reply = await self._call(
            lambda s: s.get(keys=[bucket.due, bucket.rec], args=[sender_id]), "get"
        )
        if not reply or reply[1] is None:
            return None
        return decode_record(sender_id, float(reply[0]), reply[1])[1]

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        cutoff = repr(check_time("cutoff_time", self._check_time_for_expired(cutoff_time)))
        replies = await self._each_bucket(
            lambda s, b: s.expired(keys=[b.due, b.rec], args=[cutoff]), "expired"
        )
        if len(replies) == 1:  # one bucket: Redis returned them in order
            return decode_expired(replies[0])
        timers = [timer for reply in replies for timer in decode_expired(reply)]
        timers.sort(key=lambda timer: timer.scheduled_time)
        return timers

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
        instance = instance or self._new_instance()
        body = encode_body(instance, session_id, encode_metadata(metadata))
        index = self.keys.bucket_of(sender_id)
        bucket = self.keys.keys(index)
        reply = await self._call(
            lambda s: s.store(
                keys=[bucket.due, bucket.rec, bucket.meta],
                args=[
                    sender_id,
                    repr(when),
                    body,
                    self._floor(index),
                    self._epoch_candidate(index),
                ],
            ),
            "store",
        )
        version, lost, epoch = reply.split("|", 2)
        self._observe(index, epoch, int(version), int(lost))
        return Stamp(int(version), instance, self.origin)

    async def cancel_timer(self, sender_id: str) -> CancelResult:
        check_id("sender_id", sender_id)
        index = self.keys.bucket_of(sender_id)
        bucket = self.keys.keys(index)
        reply = await self._call(
            lambda s: s.cancel(
                keys=[bucket.due, bucket.rec, bucket.meta, bucket.tomb],
                args=[
                    sender_id,
                    self._floor(index),
                    self._epoch_candidate(index),
                    self.settings.tombstone_limit,
                ],
            ),
            "cancel",
        )
        existed, version, lost, epoch = reply.split("|", 3)
        self._observe(index, epoch, int(version), int(lost))
        return CancelResult(existed == "1", Stamp(int(version), self._new_instance(), self.origin))

    async def claim_due(self, now: float, *, limit: int, lease_until: float | None) -> ClaimBatch:
        at = repr(check_time("now", now))
        limit = check_limit(limit)
        until = "" if lease_until is None else repr(check_time("lease_until", lease_until))
        shares = self._shares(limit)

        def claim(s: Scripts, index: int) -> Awaitable[Any]:
            b = self.keys.keys(index)
            return s.claim(
                keys=[b.due, b.rec, b.meta, b.lease, b.leased],
                args=[at, until, shares[index], self._floor(index), self._epoch_candidate(index)],
            )

        if self.keys.buckets == 1:
            replies: list[Any] = [await self._call(lambda s: claim(s, 0), "claim")]
        else:
            replies = await asyncio.gather(
                *(
                    self._call(functools.partial(claim, index=i), "claim")
                    for i in range(self.keys.buckets)
                ),
                return_exceptions=True,
            )
        failures = [reply for reply in replies if isinstance(reply, BaseException)]
        if len(failures) == len(replies):
            raise failures[0]
        claims: list[Claim] = []
        remaining = 0
        oldest: float | None = None
        for index, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                continue
            self._observe(index, str(reply[0]), int(reply[1]), int(reply[2]))
            remaining += int(reply[3])
            if reply[4]:
                oldest = float(reply[4]) if oldest is None else min(oldest, float(reply[4]))
            for i in range(5, len(reply), 2):
                entry = decode_lease_entry(reply[i + 1])
                claims.append(
                    Claim(
                        timer=entry.timer,
                        fire_id=reply[i],
                        version=entry.version,
                        attempt=entry.attempt,
                        leased=lease_until is not None,
                        origin=self.origin,
                    )
                )
        # Buckets that answered gave claims that are this pod's alone (at most once: already
        # deleted): they fire, and the failure of the others comes after them.
        failure = failures[0] if failures else None
        if failure is not None and not isinstance(failure, Exception):
            raise failure
        return ClaimBatch(claims, remaining, oldest, failure)

    async def complete(self, claims: Sequence[Claim]) -> None:
        by_bucket: dict[int, list[str]] = {}
        for claim in claims:
            if claim.leased:
                by_bucket.setdefault(self.keys.bucket_of(claim.timer.sender_id), []).append(
                    claim.fire_id
                )
        if not by_bucket:
            return

        async def release(s: Scripts, *, index: int, fire_ids: list[str]) -> None:
            b = self.keys.keys(index)
            await s.complete(keys=[b.lease, b.leased], args=fire_ids)

        releases = (
            self._call(functools.partial(release, index=i, fire_ids=ids), "complete")
            for i, ids in by_bucket.items()
        )
        await asyncio.gather(*releases)

    # -- ReconcilingStore -------------------------------------------------------------------

    def horizon(self) -> Horizon:
        """Per bucket, the epoch and newest version this client has seen."""
        return {str(index): seen for index, seen in self._seen.items()}

    async def reconcile(
        self, entries: Sequence[JournalEntry], horizon: Horizon
    ) -> list[ReconcileOutcome]:
        gate = asyncio.Semaphore(_RECONCILE_CONCURRENCY)

        async def one(entry: JournalEntry) -> ReconcileOutcome:
            index = self.keys.bucket_of(entry.sender_id)
            epoch, seq = horizon.get(str(index), ("", 0))
            b = self.keys.keys(index)
            timer = entry.timer
            instance = entry.instance or self._new_instance()
            if timer is None:
                op, when, body = "del", "0", ""
            else:
                op, when = "set", repr(timer.scheduled_time)
                body = encode_body(instance, timer.session_id, encode_metadata(timer.metadata))
            async with gate:
                reply = await self._call(
                    lambda s: s.reconcile(
                        keys=[b.due, b.rec, b.meta, b.tomb, b.merged],
                        args=[
                            entry.sender_id, epoch, seq, op, when, body, self._floor(index),
                            self._epoch_candidate(index), self.settings.tombstone_limit,
                            "" if entry.unacked_time is None else repr(entry.unacked_time),
                            "1" if entry.unacked_cancel else "",
                            entry.own_version, "" if timer is None else instance,
                        ],
                    ),
                    "reconcile",
                )  # fmt: skip
            self._observe(index, str(reply[2]), int(reply[3]), int(reply[4]))
            applied = bool(reply[0])
            stamp = Stamp(int(reply[1]), instance, self.origin) if applied else None
            return ReconcileOutcome(
                entry.sender_id, applied, stamp, int(reply[5]), verified=bool(reply[6])
            )

        results = await asyncio.gather(*(one(entry) for entry in entries), return_exceptions=True)
        done = [result for result in results if isinstance(result, ReconcileOutcome)]
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in failures:
            if not isinstance(failure, StoreUnavailableError):
                raise failure
        if failures:
            raise PartialReconcileError(str(failures[0]), done) from failures[0]
        return done

    # -- internals --------------------------------------------------------------------------

    async def _ready(self) -> tuple[Scripts, asyncio.Semaphore]:
        """The scripts of a client bound to the running loop (rebuilt if the loop changed),
        and the gate that bounds this store's concurrent Redis calls.

        A cluster client is initialised here, once, before any command: redis-py's asyncio
        cluster client races its lazy initialisation against concurrent first commands and
        closes connections under them ("Connection closed by server"), which its default
        retries would hide and our no-retry policy would not.
        """
        if self._closed:
            raise RuntimeError("this RedisTimerStore is closed")
        loop = asyncio.get_running_loop()
        bound = self._bound
        if bound is not None and (self._injected is not None or bound.loop is loop):
            return bound.scripts, bound.gate
        if self._build_lock is None or self._build_lock[0] is not loop:
            self._build_lock = (loop, asyncio.Lock())
        async with self._build_lock[1]:
            if self._bound is None or (self._injected is None and self._bound.loop is not loop):
                client = self._injected or build_client(self.settings)
                if isinstance(client, RedisCluster):
                    with self._translate():
                        await client.initialize()
                gate = asyncio.Semaphore(self.settings.max_connections)
                scripts = Scripts.register(client, batch=not isinstance(client, RedisCluster))
                self._bound = _Bound(loop, client, scripts, gate)
        return self._bound.scripts, self._bound.gate

    def _client(self) -> RedisClient:
        assert self._bound is not None, "no client before _ready()"
        return self._bound.client

    async def _call(self, run: Callable[[Scripts], Awaitable[T]], op: str) -> T:
        """One Redis call (`op` names it for the metrics): through the gate, with connectivity
        errors translated.

        The gate queues a burst of calls instead of letting redis-py's pool run out of
        connections, which it reports as a connection error: that would be a false outage.
        """
        observe = self.observe_call
        started = time.perf_counter() if observe is not None else 0.0
        bound = self._bound
        if (
            bound is not None
            and not self._closed
            and (self._injected is not None or bound.loop is asyncio.get_running_loop())
        ):  # every call but the first: no coroutine for `_ready`
            scripts, gate = bound.scripts, bound.gate
        else:
            scripts, gate = await self._ready()
        async with gate:
            try:
                result = await run(scripts)
            except rexc.NoScriptError:
                raise
            except UNAVAILABLE as cause:
                exc = self._unavailable(cause)
                if observe is not None:
                    observe(op, time.perf_counter() - started, exc)
                if isinstance(cause, MasterNotFoundError) and not self._diagnosed:
                    self._diagnosed = True
                    raise StoreUnavailableError(f"{exc}; {await self._ask_sentinels()}") from cause
                raise exc from cause
        if observe is not None:
            observe(op, time.perf_counter() - started, None)
        return result

    async def _ask_sentinels(self) -> str:
        """Why each sentinel failed, once: redis-py's lookup error drops the reasons."""
        reasons = []
        for host, port in self.settings.endpoints:
            probe = sentinel_probe(self.settings, host, port)
            try:
                await probe.ping()
                reasons.append(f"{host}:{port} answers")
            except PROBE_ERRORS as exc:
                reasons.append(f"{host}:{port}: {redact(str(exc).splitlines()[0][:200])}")
            finally:
                with contextlib.suppress(*UNAVAILABLE, RuntimeError):
                    await probe.aclose()
        return "sentinels: " + "; ".join(reasons)

    async def _each_bucket(self, run: Callable[[Scripts, Any], Awaitable[T]], op: str) -> list[T]:
        if self.keys.buckets == 1:
            return [await self._call(lambda s: run(s, self.keys.keys(0)), op)]

        def in_bucket(index: int) -> Callable[[Scripts], Awaitable[T]]:
            return lambda scripts: run(scripts, self.keys.keys(index))

        calls = (self._call(in_bucket(i), op) for i in range(self.keys.buckets))
        return list(await asyncio.gather(*calls))

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except rexc.NoScriptError:
            raise
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """The error a connectivity failure is reported as: where, and why in one line (its
        cause set already, for observers that see it before it is raised)."""
        error = StoreUnavailableError(
            f"{self.settings.describe()}: {_describe(exc, self.settings)}"
        )
        error.__cause__ = exc
        return error

    def _shares(self, limit: int) -> list[int]:
        """Split `limit` over the buckets, rotating the remainder so no bucket starves.

        Every bucket is still called (with share 0 if need be): the call refreshes this
        client's horizon there and reports its backlog.
        """
        count = self.keys.buckets
        base, extra = divmod(limit, count)
        start = self._rotation % count
        self._rotation += 1
        return [base + (1 if (index - start) % count < extra else 0) for index in range(count)]

    def _epoch_candidate(self, bucket: int) -> str:
        """The epoch this client proposes for a bucket Redis has no epoch for.

        The epoch tells one data set from another, so a client can notice that Redis came
        back empty (a different epoch) and log the loss.
        """
        return f"{self._epoch_base}.{bucket}"

    def _new_instance(self) -> str:
        """A fresh instance id: random (72 bits, 12 characters), so it stays unique even if
        Redis reuses a version."""
        return base64.urlsafe_b64encode(self._rng.getrandbits(72).to_bytes(9, "big")).decode()

    def _floor(self, bucket: int) -> int:
        return self._seen.get(bucket, ("", 0))[1]

    def _observe(self, bucket: int, epoch: str, seq: int, lost: int) -> None:
        """Track the newest version seen, and report data Redis lost since we last looked."""
        known = self._seen.get(bucket)
        if known is not None and (known[0] != epoch or lost > 0):
            self.data_losses += 1
            reason = "reset" if known[0] != epoch else "rolled_back"
            log.warning(
                "timer_store.redis.data_loss_detected",
                bucket=bucket,
                reason=reason,
                versions_lost=lost,
            )
            self.sink("redis_data_loss", bucket=bucket, reason=reason, versions_lost=lost)
        newest = seq if known is None else max(seq, known[1])
        self._seen[bucket] = (epoch, newest)


async def _then(release: Awaitable[None], client: RedisClient) -> None:
    """Release the direct lane, then close the client."""
    with contextlib.suppress(*UNAVAILABLE, RuntimeError):
        await release
    await client.aclose()


@dataclass(frozen=True)
class _Bound:
    """A client and what hangs off it, for the one event loop it belongs to."""

    loop: asyncio.AbstractEventLoop
    client: RedisClient
    scripts: Scripts
    gate: asyncio.Semaphore


def _describe(exc: BaseException, settings: RedisSettings) -> str:
    """A one-line, actionable reason that never includes credentials.

    redis-py's own texts can mislead: with RESP3 a missing password surfaces as "HELLO must
    be called with the client already authenticated", and a sentinel lookup that failed
    reports the sentinel client's repr instead of the reason.
    """
    text = str(exc).strip() or type(exc).__name__
    if "HELLO must be called" in text or "NOAUTH" in text:
        return "authentication required: set timer_store.password (and username for ACL users)"
    if isinstance(exc, rexc.AuthenticationError):
        first = redact(text.splitlines()[0][:200])
        return f"authentication failed ({first}): check timer_store.username and password"
    if isinstance(exc, MasterNotFoundError):
        sentinels = ", ".join(f"{host}:{port}" for host, port in settings.endpoints)
        return (
            f"no sentinel at {sentinels} named a reachable master {settings.sentinel_service!r} "
            "(check endpoints, sentinel_service and the TLS settings)"
        )
    return redact(text.splitlines()[0][:300])
