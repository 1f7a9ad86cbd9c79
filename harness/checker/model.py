"""The model of one history: what was armed, in which order, and what the run did to it.

`build.build_model` makes it once from the history rows; the rules only read it. Its queries
answer questions about the history alone. Questions that also need a bound (when could a pod
claim again after an outage?) are in `reach.py`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from harness.checker.spans import EPSILON, Span, union
from record.runinfo import RunInfo
from store.redis.keys import KeyScheme

Row = dict[str, Any]
"""A history row, as `verdict.load_rows` parses it (`d` holds the parsed detail)."""

REACH_FAULTS = frozenset({"redis_outage", "redis_restart"})
"""Faults during which no pod can reach Redis."""

IN_STORE_ORDER = frozenset({"redis", "custom"})
"""Origins whose instances share one order per sender: the store's (Redis's, or a five-method
store's). Fallback instances are ordered per pod: `fallback:<pod>`."""


@dataclass(frozen=True)
class Instance:
    """What one write armed, and what became of it; its id is its fire id."""

    id: str
    sender: str
    origin: str
    pod: str
    version: int
    scheduled_time: float
    start: float
    done: float
    row: int
    timeout: float | None = None
    written: float = math.nan
    """When it got its place in its store's order (its write began, or it was merged)."""
    payload: tuple[str | None, str | None] | None = None
    """What it was armed with: the session id and the metadata digest (None: unknown)."""
    announced: bool = True
    """A write's row announced it. False for a *ghost*: an instance first seen in a claim (a
    write that timed out but landed after all)."""
    claims: tuple[int, ...] = ()
    """The rows of its claims, every attempt."""
    declared: str | None = None
    """Why it may go unfired with no violation (`skipped_by_policy`, `gave_up`)."""

    def order(self, pod: str | None = None) -> str:
        """The order it stands in; `pod`: the pod that holds a fallback copy, if not its own."""
        if self.origin in IN_STORE_ORDER:
            return self.origin
        return f"fallback:{pod or self.pod}"


@dataclass(frozen=True)
class Write:
    """A write that can supersede an instance: a schedule, a cancel, or a merged outage state."""

    sender: str
    order: str
    """Which order it belongs to: "redis", "custom", or "fallback:<pod>"."""
    version: int
    done: float
    row: int
    instance: str | None
    start: float
    """When the call began: a call that began before a crash may have been applied before it."""
    revealed: int = -1
    """The claim row that revealed it (a write whose reply never came, seen landed by a claim
    from its store); -1 for writes their own rows announced. A claim is judged against the
    writes known by its row."""


@dataclass(frozen=True)
class Window:
    """One fault of the plan, from its `fault_start` row to its `fault_end` (or the run's end)."""

    kind: str
    start: float
    end: float
    target: str | None
    detail: Mapping[str, Any]
    row: int


@dataclass(frozen=True)
class Restart:
    """A Redis restart or failover, and what of the operation log it kept."""

    t: float
    """When Redis was back (a failover: when the old master died)."""
    crash: float
    """When the old process died: writes after it went to the Redis that came back."""
    kept_until: float | None
    """Writes begun by then were kept; None: nothing was kept."""
    kept_versions: Mapping[str, int]
    """Per bucket hash tag, the last version the kept data holds (versioned writes)."""
    cause: str
    """"restart" or "failover": the prefix of the declared classes it explains."""
    row: int


@dataclass(frozen=True)
class Model:
    """Everything the rules read, built once by `build.build_model`."""

    rows: tuple[Row, ...]
    info: RunInfo
    end: float
    """True time at which the run ended."""
    instances: Mapping[str, Instance]
    """Announced instances in history order, then ghosts in the order claims revealed them."""
    timers: Mapping[str, str]
    """Instance id to its logical timer: the id of the timer's first instance."""
    writes: Mapping[str, tuple[Write, ...]]
    windows: tuple[Window, ...]
    restarts: tuple[Restart, ...]
    crashes: Mapping[str, tuple[float, ...]]
    starts: Mapping[str, tuple[float, ...]]
    """Per pod, when it started (each incarnation)."""
    activations: Mapping[str, tuple[tuple[float, int], ...]]
    deactivations: Mapping[str, tuple[tuple[float, int], ...]]
    delivery: Mapping[str, str]
    without_fallback: frozenset[str]
    """Pods whose store has no fallback (a custom store): fallback rules do not apply."""
    fallback_lost: frozenset[str]
    """Fallback instances a pod's crash took with it."""
    unacked: Mapping[tuple[str, float], tuple[int, ...]]
    """Writes whose reply never came, by (sender, scheduled time): their rows."""
    unacked_copy: Mapping[tuple[str, float], str]
    """The fallback copy of such a write, by (sender, scheduled time)."""
    unacked_claims: tuple[tuple[float, float, float | None], ...]
    """Claims that timed out or died with their pod: (when, the claim's now, its lease end)."""
    limbo: Mapping[str, tuple[tuple[float, str], ...]]
    """Fallback instances a failed merge took out of their pod's memory, unfired until that
    pod's next merge: (when the merge began, the pod), per instance."""
    unacked_cancels: Mapping[str, tuple[float, ...]]
    failed_calls: Mapping[str, tuple[float, ...]]
    failed_writes: tuple[tuple[Row, float], ...]
    """Writes a user saw fail (message rows with an error, or no pod to take them), each with
    the time its call began."""
    call_failures: Mapping[tuple[str, str], tuple[Row, ...]]
    """What the service said about each failed write (its error class), by pod and sender."""
    store_errors: tuple[Row, ...]
    unknown_claims: tuple[Row, ...]
    """Claims of an instance no write explains."""
    fire_starts: Mapping[str, tuple[Row, ...]]
    """Per fire id, its `fire_start` rows (one per attempt), first attempt first."""
    fires_ok: Mapping[str, tuple[Row, ...]]
    by_fire: Mapping[str, tuple[Row, ...]]
    policy_outcomes: tuple[tuple[str, str], ...]
    """(fire id, `skipped_by_policy` or `gave_up`) in history order."""
    in_redis: frozenset[str]
    """Origins whose instances live in Redis, and die with what a restart loses."""
    keys: KeyScheme

    # -- logical timers and orders -----------------------------------------------------------

    def timer(self, instance: str) -> str:
        return self.timers.get(instance, instance)

    def deadline(self, instance: Instance) -> float | None:
        """The true deadline of an instance's logical timer (None if unknown)."""
        head = self.instances.get(self.timer(instance.id))
        for candidate in (head, instance):
            if candidate is not None and candidate.timeout is not None:
                return candidate.start + candidate.timeout
        return None

    def redis_order(self, done: float, version: int) -> tuple[int, int]:
        """Where a Redis write stands in its sender's order: versions count within one Redis
        lifetime; a write after a restart is newer than any before it."""
        return (sum(1 for restart in self.restarts if restart.crash < done), version)

    def newer(self, write: Write, instance: Instance, version: int) -> bool:
        """Whether `write` comes after `instance` (at `version` in Redis) in their order."""
        if write.order == "redis":
            return self.redis_order(write.start, write.version) > self.redis_order(
                instance.written, version
            )
        return write.done > instance.done

    def restart_loses(self, write_time: float, version: int, sender: str) -> Restart | None:
        """The Redis restart or failover that lost a write begun at `write_time`, if one did.

        A restart keeps a prefix of the operation log: exactly the versions up to the bucket's
        counter in the kept data (versioned writes), or what was written by `kept_until`.
        """
        tag = self.keys.keys(self.keys.bucket_of(sender)).tag
        for restart in self.restarts:
            if write_time > restart.crash:
                continue  # written to the Redis that came back
            if restart.kept_until is None:
                return restart
            if version and tag in restart.kept_versions:
                if version > restart.kept_versions[tag]:
                    return restart
            elif write_time > restart.kept_until:
                return restart
        return None

    def superseding(self, claim: Row) -> list[tuple[Write, Restart | None]]:
        """The writes that were newer than what `claim` took and had completed before it
        began, in the store that gave the claim, each with the restart that lost it (if one
        did). An instance may live in more than one store: a write that timed out but landed
        in Redis while its copy sat in memory."""
        instance = self.instances.get(claim["fire_id"])
        if instance is None:
            return []
        origin = claim["origin"] or instance.origin
        order = origin if origin in IN_STORE_ORDER else f"fallback:{claim['pod']}"
        version = int(claim["version"] or 0) if origin == "redis" else instance.version
        began = started_at(claim)
        found = []
        for write in self.writes.get(instance.sender, ()):
            if write.revealed > claim["seq"] or write.order != order:
                continue
            if write.instance == instance.id or not self.newer(write, instance, version):
                continue
            if write.done <= began - EPSILON:
                lost = order in self.in_redis and self.restart_loses(
                    write.start, write.version, write.sender
                )
                found.append((write, lost or None))
        return found

    @cached_property
    def resurrections(self) -> Mapping[str, Restart]:
        """Instances claimed after a newer write that a Redis restart then lost: the restart
        brought them back. Each with the first such restart."""
        found: dict[str, Restart] = {}
        for seqs in (instance.claims for instance in self.instances.values()):
            for seq in seqs:
                claim = self.rows[seq]
                if claim["attempt"] and int(claim["attempt"]) > 1:
                    continue
                for _, lost in self.superseding(claim):
                    if lost is None:
                        break
                    found.setdefault(claim["fire_id"], lost)
        return found

    # -- pods ----------------------------------------------------------------------------------

    def pod_down(self, pod: str) -> list[Span]:
        """When `pod` was down: from each crash to its next start (or forever)."""
        downs = []
        for crash in self.crashes.get(pod, ()):
            restarts = [t for t in self.starts.get(pod, ()) if t > crash]
            downs.append((crash, min(restarts) if restarts else math.inf))
        return downs

    def alive_through(self, pod: str, start: float, end: float) -> bool:
        return not any(
            down_start <= end and down_end >= start for down_start, down_end in self.pod_down(pod)
        )

    def crashed_between(self, pod: str, start: float, end: float) -> bool:
        return any(start <= t <= end for t in self.crashes.get(pod, ()))

    def longest_up(self, pod: str, start: float, end: float) -> float:
        """The longest stretch of [start, end] during which `pod` was running."""
        free, cursor = 0.0, start
        for down_start, down_end in union(self.pod_down(pod)):
            if down_end <= cursor or down_start >= end:
                continue
            free = max(free, down_start - cursor)
            cursor = max(cursor, down_end)
        return max(free, end - cursor)

    def active_at(self, pod: str, when: float) -> bool:
        """Whether `pod`'s fallback was active at `when`."""
        last_on = max(
            (t for t, _ in self.activations.get(pod, ()) if t < when - EPSILON), default=None
        )
        if last_on is None:
            return False
        last_off = max(
            (t for t, _ in self.deactivations.get(pod, ()) if t < when), default=-math.inf
        )
        crashed = any(last_on < t < when for t in self.crashes.get(pod, ()))
        return last_off < last_on and not crashed

    def crashed_after(self, claim: Row) -> bool:
        """Whether the claiming pod crashed after the claim, before any attempt finished."""
        done = [
            r
            for r in self.by_fire.get(claim["fire_id"], ())
            if r["kind"] == "fire" and r["outcome"] == "fire_done"
        ]
        return any(c >= claim["t"] for c in self.crashes.get(claim["pod"], ())) and not done

    # -- Redis's replies -------------------------------------------------------------------

    @cached_property
    def slow_pieces(self) -> tuple[tuple[float, float, float], ...]:
        """Redis's extra reply latency over time, piece by piece: overlapping slow faults add
        up (a slow Redis stacked on a slow Redis: swarm seed 2997)."""
        slow = [w for w in self.windows if w.kind == "slow_redis"]
        moments = sorted({w.start for w in slow} | {w.end for w in slow})
        pieces = []
        for start, end in itertools.pairwise(moments):
            extra = sum(
                w.detail.get("latency") or 0.0 for w in slow if w.start <= start and end <= w.end
            )
            if extra > 0:
                pieces.append((start, end, extra))
        return tuple(pieces)

    @property
    def timeout_latency(self) -> float:
        """The extra reply latency at which a call misses its socket timeout: the timeout less
        the call's own round trip."""
        return self.info.socket_timeout - 2 * self.info.latency

    @property
    def straggle(self) -> float:
        """How long after a fault ends a call sent during it may still fail: one socket
        timeout, plus the round trip of a reply that was on its way."""
        return self.info.socket_timeout + 2 * self.info.latency

    def timeout_spans(self) -> list[Span]:
        """When a slow Redis answers after the socket timeout: to a client, an outage."""
        limit = self.timeout_latency
        return union((start, end) for start, end, extra in self.slow_pieces if extra >= limit)

    def slowest_answer(self) -> float:
        """σ: the most extra latency a call that still succeeds can meet."""
        limit = self.timeout_latency
        return max((extra for _, _, extra in self.slow_pieces if extra < limit), default=0.0)

    def times_out(self, window: Window) -> bool:
        """Whether this slow fault alone makes replies miss the socket timeout (stacked with
        another it may, too: that is judged on `timeout_spans`, not as this fault's evidence;
        swarm seed 1512)."""
        extra = window.detail.get("latency") or 0.0
        return bool(extra + 2 * self.info.latency >= self.info.socket_timeout)

    def cuts_off(self, window: Window) -> bool:
        """Whether the fault keeps the pods it affects from reaching Redis."""
        if window.kind in REACH_FAULTS or window.kind == "partial_outage":
            return True
        return window.kind == "slow_redis" and self.times_out(window)

    def cut_spans(self, pod: str) -> list[Span]:
        """When `pod` could not reach the store: outages of all pods, its own partial
        outages, replies slower than the socket timeout."""
        spans = [(w.start, w.end) for w in self.windows if w.kind in REACH_FAULTS]
        spans += [
            (w.start, w.end) for w in self.windows if w.kind == "partial_outage" and w.target == pod
        ]
        return union(spans + self.timeout_spans())


def started_at(row: Row) -> float:
    """True time a call began: its end minus its duration on the pod's clock.

    A pod clock that steps during the call (a skew fault) can make that duration wrong, even
    negative; it is clamped at 0, which only ever makes a call look shorter, never longer.
    """
    return float(row["t"]) - max(0.0, row["elapsed"] or 0.0)
