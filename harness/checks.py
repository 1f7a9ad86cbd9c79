"""The checker: judges one history against the semantics of docs/architecture.md, section 5.

Vocabulary:
- an *instance* is what one write armed; its id is its fire id;
- instances of one sender are ordered by the store: Redis instances by their version, the
  writes of one pod's fallback memory by that pod's order, a plain (five-method) store's by
  the order its writes completed;
- a *logical timer* groups the instances that carry one armed timeout across stores: an outage
  write merged into Redis, a write that timed out but landed after all, its fallback copy;
- the true deadline `D` of a logical timer is the true time its message was handled plus its
  timeout.

Rules (each violation points at its history rows):
- `duplicate`: a logical timer fired successfully under two different fire ids;
- `unexplained_refire`: the same fire id fired again without a crash, a failed fire, a lapsed
  lease, an outage of its claimer or a Redis restart to explain it;
- `superseded`: a claim that started after a newer write of the same sender had completed;
- `early`: a fire before `D - S` (S: the largest clock offset between pods);
- `lost`: current at the end, due before `end - bound`, never fired, and not a declared loss;
- `late`: fired later than `D + bound`, not counting time when no healthy pod could reach it;
- `fallback_activation` / `fallback_deactivation` / `fallback_flapping` / `spurious_fallback`;
- `unknown_instance`: a claim of an instance no write explains;
- `not_exercised`: a fault of the plan left no trace (an outage that never activated the
  fallback is a failed scenario, not a pass);
- `payload`: a fire that did not carry the `session_id`, `scheduled_time` or metadata (by
  digest) its instance was armed with;
- `write_failed`: a conversation's write (re-arm or end) failed outside every fault that could
  explain it: that user was left without the timer they asked for, or with one they ended;
- `store_error`: the store broke its contract: it raised something other than a connectivity
  error for a valid call, lacked a method, or returned the wrong type;
- `vacuous`: nothing was armed, or nothing ever fired: such a run proves nothing;
- `loop_stall`: a pod's event loop stalled longer than the run's bound (real processes
  measure it): every request and timer of that pod waited, as a synchronous Redis client
  inside async methods makes them wait.

Declared losses are counted by class and are never violations: what a Redis restart's
persistence mode lost (writes, and resurrections of cancelled or claimed timers), fallback
timers of a pod that crashed, at-most-once crashes between claim and fire, `skip_older_than`
skips, callbacks given up after their attempts, writes that failed while their pod could not
reach the store (`write_failed_outage`) or died mid-call (`write_failed_crash`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from record.history import read_history
from record.runinfo import RunInfo
from store.redis.keys import KeyScheme

EPSILON = 1e-6
REACH_FAULTS = {"redis_outage", "redis_restart"}
"""Faults during which no pod can reach Redis."""


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Bound:
    """A bound printed as its formula, its values and its total."""

    name: str
    formula: str
    terms: tuple[tuple[str, float], ...]

    @property
    def value(self) -> float:
        return sum(value for _, value in self.terms)

    def describe(self) -> str:
        values = " + ".join(f"{value:.3f}" for _, value in self.terms)
        return f"{self.name} = {self.formula} = {values} = {self.value:.3f} s"


@dataclass
class Verdict:
    """The checker's result for one run."""

    info: RunInfo
    violations: list[Violation]
    declared: Counter[str]
    exercised: dict[str, str]
    bounds: list[Bound]
    stats: dict[str, float]
    fires: list[dict[str, Any]] = field(default_factory=list)
    """Per fired timer: pod, deadline, fire time, lateness (for reports)."""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """Spans to draw: fault windows, each pod's fallback and downtime (lane, what, start, end)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def rules(self) -> Counter[str]:
        return Counter(v.rule for v in self.violations)

    def table(self) -> str:
        """The verdict as text: bounds, rule counts, declared losses, exercised faults."""
        outcome = "PASS" if self.ok else "FAIL"
        lines = [f"verdict: {outcome}  ({self.info.scenario}, seed {self.info.seed})"]
        lines += [f"  {bound.describe()}" for bound in self.bounds]
        lines.append("  rules:")
        counts = self.rules()
        for rule in RULES:
            lines.append(f"    {rule:<24} {counts.get(rule, 0):>6}")
        lines.append("  declared losses:")
        for name in DECLARED:
            lines.append(f"    {name:<32} {self.declared.get(name, 0):>6}")
        if self.exercised:
            lines.append("  faults exercised:")
            lines += [f"    {fault:<32} {evidence}" for fault, evidence in self.exercised.items()]
        lines.append("  stats: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.stats.items()))
        lines += [f"  note: {note}" for note in self.info.notes]
        for violation in self.violations[:20]:
            rows = ",".join(str(r) for r in violation.rows[:8])
            lines.append(f"  ! {violation.rule}: {violation.message} (rows {rows})")
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join(lines)

    def to_data(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "info": self.info.to_data(),
            "rules": {rule: self.rules().get(rule, 0) for rule in RULES},
            "declared": {name: self.declared.get(name, 0) for name in DECLARED},
            "exercised": self.exercised,
            "bounds": [
                {
                    "name": b.name,
                    "formula": b.formula,
                    "terms": dict(b.terms),
                    "value": round(b.value, 6),
                }
                for b in self.bounds
            ],
            "stats": self.stats,
            "violations": [
                {"rule": v.rule, "message": v.message, "rows": list(v.rows)}
                for v in self.violations
            ],
        }


RULES = (
    "duplicate",
    "unexplained_refire",
    "superseded",
    "early",
    "lost",
    "late",
    "fallback_activation",
    "fallback_deactivation",
    "fallback_flapping",
    "spurious_fallback",
    "unknown_instance",
    "not_exercised",
    "payload",
    "write_failed",
    "store_error",
    "vacuous",
    "loop_stall",
)
DECLARED = (
    "restart_lost_write",
    "restart_resurrection",
    "fallback_lost_on_crash",
    "crash_between_claim_and_fire",
    "skipped_by_policy",
    "gave_up",
    "failover_lost_write",
    "failover_resurrection",
    "write_failed_outage",
    "write_failed_crash",
)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@dataclass
class Instance:
    """One write, and what became of it."""

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
    root: str = ""
    claims: list[int] = field(default_factory=list)
    declared: str | None = None
    written: float = math.nan
    """When it got its place in its store's order (its write began, or it was merged)."""
    resurrected: bool = False
    """Brought back by a Redis restart that lost what had superseded, cancelled or claimed it."""
    payload: tuple[str | None, str | None] | None = None
    """What it was armed with: the session id and the metadata digest (None: unknown)."""

    def __post_init__(self) -> None:
        if math.isnan(self.written):
            self.written = self.start


@dataclass
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


@dataclass
class Window:
    kind: str
    start: float
    end: float
    target: str | None
    detail: dict[str, Any]
    row: int


class _Checker:
    def __init__(self, rows: list[dict[str, Any]], info: RunInfo) -> None:
        self.rows = rows
        self.info = info
        self.violations: list[Violation] = []
        self.declared: Counter[str] = Counter()
        self.instances: dict[str, Instance] = {}
        self.parent: dict[str, str] = {}
        self.writes: dict[str, list[Write]] = defaultdict(list)
        self.unacked: dict[tuple[str, float], list[int]] = defaultdict(list)
        self.windows: list[Window] = []
        self.crashes: dict[str, list[float]] = defaultdict(list)
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.restarts: list[dict[str, Any]] = []
        self.activations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.deactivations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.fallback_lost: set[str] = set()
        self.delivery: dict[str, str] = {}
        self.lateness_allowance = 0.0
        """The lateness bound: how long after its deadline a due timer may still be claimed."""
        self.recovery_allowance = 0.0
        """How long pods may take to merge back after an outage (the deactivation bound)."""
        self.unacked_copy: dict[tuple[str, float], str] = {}
        self.unacked_claims: list[tuple[float, float, float | None]] = []
        self.unacked_cancels: dict[str, list[float]] = defaultdict(list)
        self.without_fallback: set[str] = set()
        """Pods whose store has no fallback (a custom store): fallback rules do not apply."""
        self.failed_calls: dict[str, list[float]] = defaultdict(list)
        self.failed_writes: list[tuple[dict[str, Any], float]] = []
        """Writes a user saw fail (message rows with an error, or no pod to take them), each
        with the time its call began."""
        self.call_failures: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        """What the service said about each failed write (its error class), by pod and sender."""
        self.lateness: list[float] = []
        self.fires: list[dict[str, Any]] = []
        """One row per logical timer that fired: who fired it, its deadline, how late."""
        self.raw_refires = 0
        self.fires_ok: dict[str, list[dict[str, Any]]] = {}
        self.keys = KeyScheme(info.key_prefix, info.buckets)
        self.in_redis = {"redis", "custom"} if info.custom_in_redis else {"redis"}
        """Origins whose instances live in Redis, and die with what a restart loses."""
        self.end = info.end or (rows[-1]["t"] if rows else 0.0)

    # -- union-find over instances: logical timers -----------------------------------------

    def root(self, instance: str) -> str:
        while self.parent.get(instance, instance) != instance:
            instance = self.parent[instance]
        return instance

    def join(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra

    # -- pass 1: collect ----------------------------------------------------------------------

    def collect(self) -> None:
        open_faults: dict[int, tuple[dict[str, Any], int]] = {}
        last_message: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.rows:
            kind = row["kind"]
            seq = row["seq"]
            if kind == "schedule":
                self._add_instance(row, row["instance"], row["origin"])
                self._add_write(row, row["origin"], row["instance"])
            elif kind == "cancel":
                self._add_write(row, row["origin"], None)
            elif kind == "reconciled":
                self._reconciled(row)
            elif (kind == "message" and row["scheduled_time"] is not None) or (
                kind == "message" and row["d"].get("end")
            ):
                last_message[(row["pod"], row["sender_id"])] = row
            elif kind == "message" and row["result"] == "no_pod":
                self.failed_writes.append((row, row["t"]))
            elif kind == "message" and row["result"] == "error":
                self.failed_calls[row["pod"]].append(row["t"])
                # The write's outcome is unknown (its pod crashed, or Redis failed mid-call).
                sent = last_message.get((row["pod"], row["sender_id"]))
                self.failed_writes.append((row, row["t"] if sent is None else sent["t"]))
                if sent is not None and sent["d"].get("end"):
                    self.unacked_cancels[sent["sender_id"]].append(sent["t"])
                elif sent is not None:
                    self.unacked[(sent["sender_id"], sent["scheduled_time"])].append(sent["seq"])
            elif kind == "call_failed":
                self.call_failures[(row["pod"], row["sender_id"])].append(row)
            elif kind == "store_error":
                self.violations.append(
                    Violation(
                        "store_error",
                        f"{row['pod']}: {row['d'].get('op')} raised {row['d'].get('error')}: "
                        f"{row['d'].get('message', '')}",
                        (row["seq"],),
                    )
                )
            elif kind == "write_unacknowledged" and row["d"].get("op") == "cancel":
                self.unacked_cancels[row["sender_id"]].append(row["t"])
            elif kind == "write_unacknowledged" and row["d"].get("op") == "schedule":
                self.unacked[(row["sender_id"], row["scheduled_time"])].append(seq)
            elif kind == "write_unacknowledged" and row["d"].get("op") == "claim":
                self.unacked_claims.append((row["t"], row["d"]["now"], row["d"].get("lease_until")))
            elif kind == "pod_crash":
                self.crashes[row["pod"]].append(row["t"])
                self.fallback_lost.update(row["d"].get("fallback_lost", []))
                # A claim in flight when the pod died may have leased due timers anyway.
                if row["pod_time"] is not None:
                    now = row["pod_time"]
                    self.unacked_claims.append(
                        (row["t"], now, now + self.info.service.lease_seconds)
                    )
            elif kind == "pod_start":
                self.starts[row["pod"]].append(row["t"])
                self.delivery[row["pod"]] = row["d"].get("delivery", "at_least_once")
                if not row["d"].get("fallback", True):
                    self.without_fallback.add(row["pod"])
            elif kind == "fallback_activated":
                self.activations[row["pod"]].append((row["t"], seq))
            elif kind == "fallback_deactivated":
                self.deactivations[row["pod"]].append((row["t"], seq))
            elif kind == "redis_restart":
                self.restarts.append({**row["d"], "t": row["t"], "row": seq})
            elif kind == "fault_start":
                open_faults[row["d"]["fault_index"]] = (row, seq)
            elif kind == "fault_end":
                # Matched by index alone: two faults of one kind may overlap (two partial
                # outages of different pods), and each ends its own window.
                match = open_faults.pop(row["d"]["fault_index"], None)
                if match is not None:
                    self._window(match[0], row["t"], match[1])
        for start_row, seq in open_faults.values():
            self._window(start_row, self.end, seq)
        for restart in self.restarts:
            restart["crash"] = self._crash_time(restart) or restart["t"]
            restart.setdefault("cause", "restart")
        self.restarts.extend(self._failovers())

    def _failovers(self) -> list[dict[str, Any]]:
        """A failover as a restart that kept what had replicated by the kill.

        Replication is asynchronous: the promoted replica may lack the last writes the old
        master acknowledged. The fault records how far back that may reach
        (`replication_window`); an unfired write from that window is a declared loss.
        """
        return [
            {
                "t": window.start,
                "crash": window.start,
                "kept_until": window.start - float(window.detail.get("replication_window", 0.0)),
                "cause": "failover",
                "row": window.row,
            }
            for window in self.windows
            if window.kind == "redis_outage" and window.detail.get("mode") == "failover"
        ]

    def _window(self, start_row: dict[str, Any], end: float, seq: int) -> None:
        detail = start_row["d"]
        self.windows.append(
            Window(detail.get("fault", ""), start_row["t"], end, detail.get("target"), detail, seq)
        )

    def _add_instance(self, row: dict[str, Any], instance: str, origin: str) -> Instance:
        timeout = row["d"].get("timeout")
        item = Instance(
            id=instance,
            sender=row["sender_id"],
            origin=origin,
            pod=row["pod"],
            version=int(row["version"] or 0),
            scheduled_time=row["scheduled_time"],
            start=_started(row),
            done=row["t"],
            row=row["seq"],
            timeout=timeout,
        )
        item.payload = (row["session_id"], row["d"].get("metadata"))
        self.instances.setdefault(instance, item)
        self.parent.setdefault(instance, instance)
        key = (item.sender, item.scheduled_time)
        if origin == "fallback" and key in self.unacked:
            self.unacked_copy[key] = instance  # the fallback copy of a write that timed out
        return item

    def _add_write(self, row: dict[str, Any], origin: str, instance: str | None) -> None:
        order = (
            f"fallback:{row['pod']}"
            if origin == "fallback"
            else ("redis" if origin == "redis" else origin or "custom")
        )
        self.writes[row["sender_id"]].append(
            Write(
                row["sender_id"],
                order,
                int(row["version"] or 0),
                row["t"],
                row["seq"],
                instance,
                start=_started(row),
            )
        )

    def _reconciled(self, row: dict[str, Any]) -> None:
        """A merged outage state: a new Redis instance (or tombstone), same logical timer."""
        detail = row["d"]
        if not detail.get("applied"):
            return
        instance = row["instance"]
        version = int(row["version"] or 0)
        # Applied at some point of the merge call, which may have begun before a Redis
        # restart that then lost it (swarm seed 2217): ordered from the call's start.
        began = _started(row)
        if instance and instance in self.instances:
            # Merged under its own id: the same instance now lives in Redis.
            moved = self.instances[instance]
            moved.origin, moved.version, moved.done = "redis", version, row["t"]
            moved.written = began
        elif instance and row["scheduled_time"] is not None:
            item = Instance(
                id=instance,
                sender=row["sender_id"],
                origin="redis",
                pod=row["pod"],
                version=version,
                scheduled_time=row["scheduled_time"],
                start=began,
                done=row["t"],
                row=row["seq"],
            )
            self.instances.setdefault(instance, item)
            self.parent.setdefault(instance, instance)
            source = detail.get("from_instance")
            if source:
                self.parent.setdefault(source, source)
                self.join(source, instance)
                if source in self.instances:
                    item.payload = self.instances[source].payload
        self.writes[row["sender_id"]].append(
            Write(row["sender_id"], "redis", version, row["t"], row["seq"], instance, began)
        )

    # -- helpers --------------------------------------------------------------------------------

    def deadline(self, instance: Instance) -> float | None:
        """The true deadline of an instance's logical timer (None if unknown)."""
        root = self.instances.get(self.root(instance.id))
        for candidate in (root, instance):
            if candidate is not None and candidate.timeout is not None:
                return candidate.start + candidate.timeout
        return None

    def _redis_order(self, done: float, version: int) -> tuple[int, int]:
        """Where a Redis write stands in its sender's order: versions count within one Redis
        lifetime; a write after a restart is newer than any before it."""
        return (sum(1 for restart in self.restarts if restart["crash"] < done), version)

    def restart_loses(self, write_time: float, version: int, sender: str) -> dict[str, Any] | None:
        """The Redis restart or failover that lost a write begun at `write_time`, if one did.

        A restart keeps a prefix of the operation log: exactly the versions up to the bucket's
        counter in the kept data (versioned writes), or what was written by `kept_until`.
        """
        tag = self.keys.keys(self.keys.bucket_of(sender)).tag
        for restart in self.restarts:
            if write_time > restart["crash"]:
                continue  # written to the Redis that came back
            kept = restart.get("kept_versions") or {}
            if restart.get("kept_until") is None:
                return restart
            if version and tag in kept:
                if version > kept[tag]:
                    return restart
            elif write_time > restart["kept_until"]:
                return restart
        return None

    def _crash_time(self, restart: dict[str, Any]) -> float | None:
        """When the Redis process of a restart went down (its fault window's start)."""
        for window in self.windows:
            if (
                window.kind == "redis_restart"
                and window.start <= restart["t"] <= window.end + EPSILON
            ):
                return window.start
        return None

    def unreachable(self, origin: str, pod: str) -> list[tuple[float, float]]:
        """Intervals when no healthy pod could reach an instance of this origin.

        A Redis instance is out of reach while Redis is (for everyone) or while no pod is up
        and connected; a fallback instance lives in one pod's memory, out of reach while that
        pod is down.
        """
        if origin == "fallback":
            return _union(self._pod_down(pod))
        spans = [
            (window.start, window.end) for window in self.windows if window.kind in REACH_FAULTS
        ]
        spans += self.timeout_spans()
        recovered = [
            (start, self._claiming_again(end, list(self.deactivations)))
            for start, end in _union(spans)
        ]
        return _union(recovered + self._no_pod_up())

    def _claiming_again(self, end: float, pods: list[str]) -> float:
        """When the first of `pods`, cut off from Redis until `end`, claims every due timer.

        Back from an outage, a pod polls Redis again only once it has merged its outage
        writes; then, for two probe intervals, it holds back timers that came due during the
        outage (it cannot tell a partial outage from a full one).
        """
        merged = [t for pod in pods for t, _ in self.deactivations.get(pod, []) if t >= end]
        return min([*merged, end + self.recovery_allowance]) + 2 * self.info.service.probe_interval

    def _cut_off(self, pod: str) -> list[tuple[float, float]]:
        """When a pod's own partial outages kept it from claiming Redis timers."""
        return [
            (window.start, self._claiming_again(window.end, [pod]))
            for window in self.windows
            if window.kind == "partial_outage" and window.target == pod
        ]

    def slow_pieces(self) -> list[tuple[float, float, float]]:
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
        return pieces

    def timeout_spans(self) -> list[tuple[float, float]]:
        """When a slow Redis answers after the socket timeout: to a client, an outage."""
        limit = self.info.socket_timeout - 2 * self.info.latency
        return _union((start, end) for start, end, extra in self.slow_pieces() if extra >= limit)

    def slowest_answer(self) -> float:
        """σ: the most extra latency a call that still succeeds can meet."""
        limit = self.info.socket_timeout - 2 * self.info.latency
        return max((extra for _, _, extra in self.slow_pieces() if extra < limit), default=0.0)

    def _times_out(self, window: Window) -> bool:
        """Whether this slow fault alone makes replies miss the socket timeout (stacked with
        another it may, too: that is judged on `timeout_spans`, not as this fault's evidence;
        swarm seed 1512)."""
        extra = window.detail.get("latency") or 0.0
        return bool(extra + 2 * self.info.latency >= self.info.socket_timeout)

    def _pod_down(self, pod: str) -> list[tuple[float, float]]:
        downs = []
        for crash in self.crashes.get(pod, []):
            restarts = [t for t in self.starts.get(pod, []) if t > crash]
            downs.append((crash, min(restarts) if restarts else math.inf))
        return downs

    def _no_pod_up(self) -> list[tuple[float, float]]:
        pods = set(self.starts) | set(self.crashes)
        cut: dict[str, list[tuple[float, float]]] = {
            pod: self._pod_down(pod) + self._cut_off(pod) for pod in pods
        }
        if not pods:
            return []
        common = _union(cut[next(iter(pods))])
        for pod in pods:
            common = _intersect(common, _union(cut[pod]))
        return common

    # -- rules ----------------------------------------------------------------------------------

    def check_claims_and_fires(self) -> None:
        fires_ok: dict[str, list[dict[str, Any]]] = defaultdict(list)
        starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        claims_by_fire: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in self.rows:
            kind = row["kind"]
            if kind == "claim":
                self._claim(row)
                claims_by_fire[row["fire_id"]].append(row)
            elif kind == "fire" and row["outcome"] == "fire_start":
                if not starts[row["fire_id"]]:
                    self._payload(row)
                starts[row["fire_id"]].append(row)
            elif kind == "fire" and row["outcome"] == "fire_done" and row["result"] == "ok":
                fires_ok[row["fire_id"]].append(row)
            elif kind == "skip":
                self._declare_instance(row["fire_id"], "skipped_by_policy")
            elif kind == "give_up":
                self._declare_instance(row["fire_id"], "gave_up")
        self.fires_ok = fires_ok
        self.claims_by_fire = claims_by_fire
        self._duplicates(fires_ok)
        self._refires(starts, claims_by_fire, fires_ok)
        self._early(starts)

    def _claim(self, row: dict[str, Any]) -> None:
        fire_id = row["fire_id"]
        instance = self.instances.get(fire_id)
        if instance is None:
            instance = self._ghost(row)
            if instance is None:
                return
        instance.claims.append(row["seq"])
        self._landed(instance, row)
        if row["attempt"] and int(row["attempt"]) > 1:
            return
        claim_start = _started(row)
        # Judged in the order of the store that gave the claim (an instance may live in more
        # than one: a write that timed out but landed in Redis while its copy sat in memory).
        origin = row["origin"] or instance.origin
        order = origin if origin in {"redis", "custom"} else f"fallback:{row['pod']}"
        version = int(row["version"] or 0) if origin == "redis" else instance.version
        for write in self.writes.get(instance.sender, []):
            if write.order != order or write.instance == instance.id:
                continue
            newer = (
                self._redis_order(write.start, write.version)
                > self._redis_order(instance.written, version)
                if order == "redis"
                else write.done > instance.done
            )
            if newer and write.done <= claim_start - EPSILON:
                lost = order in self.in_redis and self.restart_loses(
                    write.start, write.version, write.sender
                )
                if lost:
                    if not instance.resurrected:
                        self.declared[f"{lost['cause']}_resurrection"] += 1
                    instance.resurrected = True
                    continue
                self.violations.append(
                    Violation(
                        "superseded",
                        f"{instance.sender}: claimed {instance.id} at {claim_start:.3f} after a "
                        f"newer write (row {write.row}) completed at {write.done:.3f}",
                        (instance.row, write.row, row["seq"]),
                    )
                )
                return

    def _ghost(self, row: dict[str, Any]) -> Instance | None:
        """An instance no schedule announced: a write that timed out but landed, or a bug."""
        key = (row["sender_id"], row["scheduled_time"])
        copy = self.unacked_copy.get(key)
        known = [i for i in self.instances.values() if (i.sender, i.scheduled_time) == key]
        if copy is None and not known and not self.unacked.get(key):
            self.violations.append(
                Violation(
                    "unknown_instance",
                    f"{row['sender_id']}: claimed {row['fire_id']}, which no write explains",
                    (row["seq"],),
                )
            )
            return None
        item = Instance(
            id=row["fire_id"],
            sender=row["sender_id"],
            origin=row["origin"] or "redis",
            pod=row["pod"],
            version=int(row["version"] or 0),
            scheduled_time=row["scheduled_time"],
            start=row["t"],
            done=row["t"],
            row=row["seq"],
        )
        self.instances[item.id] = item
        self.parent.setdefault(item.id, item.id)
        partner = copy or (known[0].id if known else None)
        if partner is not None:
            self.join(partner, item.id)
        elif self.unacked.get(key):
            # The write's reply never came and no copy exists: the ghost is the only one.
            unacked_row = self.rows[self.unacked[key][0]]
            item.start = unacked_row["t"]
            item.timeout = unacked_row["d"].get("timeout")
            if unacked_row["kind"] == "message":
                item.payload = (unacked_row["session_id"], unacked_row["d"].get("metadata"))
        if self.unacked.get(key):
            item.written = self.rows[self.unacked[key][0]]["t"]
        return item

    def _landed(self, instance: Instance, claim: dict[str, Any]) -> None:
        """A claim from the store of a write whose reply never came (its pod crashed mid-call,
        or it timed out, into the fallback or to the user): it landed after all, and
        superseded whatever its sender had armed there before (swarm seeds 1122, 1848; the
        example store's seed 2). It landed by the time it was claimed, at the latest."""
        order = claim["origin"]
        if order not in {"redis", "custom"} or any(
            w.order == order and w.instance == instance.id for w in self.writes[instance.sender]
        ):
            return
        version = int(claim["version"] or 0)
        self.writes[instance.sender].append(
            Write(instance.sender, order, version, _started(claim), claim["seq"], instance.id,
                  instance.written)
        )  # fmt: skip

    def _payload(self, fire: dict[str, Any]) -> None:
        """A fire carries exactly what its instance was armed with: the session id (what tells
        the receiver whether the session it ends is still the current one), the scheduled
        time, and the metadata (compared by digest)."""
        instance = self.instances.get(fire["fire_id"])
        if instance is None or instance.payload is None:
            return
        session, digest = instance.payload
        problems = []
        if fire["session_id"] != session:
            problems.append(f"session_id {fire['session_id']!r}, armed with {session!r}")
        if fire["scheduled_time"] != instance.scheduled_time:
            problems.append(
                f"scheduled_time {fire['scheduled_time']!r}, armed for {instance.scheduled_time!r}"
            )
        fired = fire["d"].get("metadata")
        if digest is not None and fired is not None and fired != digest:
            problems.append(f"metadata {fired}, armed with {digest} (digests)")
        if problems:
            self.violations.append(
                Violation(
                    "payload",
                    f"{instance.sender}: {fire['fire_id']} fired with " + "; ".join(problems),
                    (instance.row, fire["seq"]),
                )
            )

    def check_failed_writes(self) -> None:
        """Every write a user saw fail, judged: explained by a fault that cut its pod off or
        killed it mid-call (declared by class), or a violation. A store that raised something
        other than a connectivity error broke its contract."""
        margin = self.info.socket_timeout + 2 * self.info.latency
        for row, began in self.failed_writes:
            pod, t = row["pod"], row["t"]
            causes = [c for c in self.call_failures.get((pod, row["sender_id"]), []) if c["t"] <= t]
            cause = causes[-1] if causes else None
            if cause is not None and not cause["d"].get("unavailable", True):
                self.violations.append(
                    Violation(
                        "store_error",
                        f"{pod}: {cause['d'].get('op')} for {row['sender_id']} raised "
                        f"{cause['d'].get('error')}: {cause['d'].get('message', '')}",
                        (cause["seq"], row["seq"]),
                    )
                )
                continue
            if pod is None or any(
                began - EPSILON <= crash <= t + EPSILON for crash in self.crashes.get(pod, [])
            ):
                self.declared["write_failed_crash"] += 1
                continue
            # A pod in its fallback (until it merges back, after the fault) may refuse writes
            # so a degraded-aware balancer retries them on a peer (`refusing_fallback`).
            if self._active_at(pod, t) or any(
                s - EPSILON <= t <= e + margin for s, e in self._cut_spans(pod)
            ):
                self.declared["write_failed_outage"] += 1
                continue
            error = "no reply" if cause is None else cause["d"].get("error")
            self.violations.append(
                Violation(
                    "write_failed",
                    f"{pod}: a write for {row['sender_id']} failed at {t:.3f} ({error}) with no "
                    "fault to explain it: that conversation is left without its timer",
                    (row["seq"],) if cause is None else (cause["seq"], row["seq"]),
                )
            )

    def _cut_spans(self, pod: str) -> list[tuple[float, float]]:
        """When `pod` could not reach the store: outages of all pods, its own partial
        outages, replies slower than the socket timeout."""
        spans = [(w.start, w.end) for w in self.windows if w.kind in REACH_FAULTS]
        spans += [
            (w.start, w.end) for w in self.windows if w.kind == "partial_outage" and w.target == pod
        ]
        return _union(spans + self.timeout_spans())

    def _declare_instance(self, fire_id: str, reason: str) -> None:
        self.declared[reason] += 1
        instance = self.instances.get(fire_id)
        if instance is not None:
            instance.declared = reason

    def _duplicates(self, fires_ok: dict[str, list[dict[str, Any]]]) -> None:
        by_timer: dict[str, list[str]] = defaultdict(list)
        for fire_id in fires_ok:
            if fire_id in self.instances:
                by_timer[self.root(fire_id)].append(fire_id)
        for root, fire_ids in by_timer.items():
            if len(fire_ids) > 1:
                rows = tuple(fires_ok[f][0]["seq"] for f in fire_ids)
                self.violations.append(
                    Violation(
                        "duplicate",
                        f"{self.instances[root].sender}: one timer fired as {', '.join(fire_ids)}",
                        rows,
                    )
                )

    def _refires(
        self,
        starts: dict[str, list[dict[str, Any]]],
        claims: dict[str, list[dict[str, Any]]],
        fires_ok: dict[str, list[dict[str, Any]]],
    ) -> None:
        self.raw_refires = 0
        for fire_id, attempts in starts.items():
            for previous, current in itertools.pairwise(attempts):
                self.raw_refires += 1
                if current["origin"] == "custom":
                    self._claimed_twice(fire_id, previous, current)
                elif not self._refire_explained(fire_id, previous, current, claims):
                    self.violations.append(
                        Violation(
                            "unexplained_refire",
                            f"{previous['sender_id']}: {fire_id} fired again by {current['pod']} "
                            f"with nothing to explain it",
                            (previous["seq"], current["seq"]),
                        )
                    )

    def _claimed_twice(
        self, fire_id: str, previous: dict[str, Any], current: dict[str, Any]
    ) -> None:
        """A five-method store's timer fired twice: its conditional delete succeeded twice.

        Such a store holds no leases, so nothing re-fires a claim: the only excuse is a Redis
        restart in between that brought the deleted timer back (a declared resurrection).
        """
        for restart in self.restarts:
            if previous["t"] <= restart["t"] <= current["t"] + EPSILON:
                self.declared[f"{restart['cause']}_resurrection"] += 1
                return
        self.violations.append(
            Violation(
                "duplicate",
                f"{previous['sender_id']}: {fire_id} fired by {previous['pod']} and again by "
                f"{current['pod']}: two conditional deletes of one timer both succeeded, or a "
                "retried write armed it again after it fired",
                (previous["seq"], current["seq"]),
            )
        )

    def _refire_explained(
        self,
        fire_id: str,
        previous: dict[str, Any],
        current: dict[str, Any],
        claims: dict[str, list[dict[str, Any]]],
    ) -> bool:
        pod, t0, t1 = previous["pod"], previous["t"], current["t"]
        if self.unacked.get((previous["sender_id"], previous["scheduled_time"])):
            return True  # a write that timed out landed after all, while its copy fired too
        done = [
            r
            for r in self.rows_for_fire(fire_id)
            if r["kind"] == "fire"
            and r["outcome"] == "fire_done"
            and r["pod"] == pod
            and r["t"] >= t0
        ]
        if not done or done[0]["result"] != "ok":
            return True  # the previous attempt failed or never finished
        if any(t0 <= crash <= t1 for crash in self.crashes.get(pod, [])):
            return True
        if any(
            t0 - self.info.service.lease_seconds <= t <= t1
            for t, _ in self.activations.get(pod, [])
        ):
            return True  # its lease could not be released during an outage
        for restart in self.restarts:
            if t0 <= restart["t"] <= t1 + EPSILON:
                self.declared[f"{restart['cause']}_resurrection"] += 1
                return True
        return bool(
            done[0]["t"] - t0 >= self.info.service.lease_seconds
        )  # a fire slower than its lease

    def rows_for_fire(self, fire_id: str) -> Iterator[dict[str, Any]]:
        if not hasattr(self, "_by_fire"):
            self._by_fire: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in self.rows:
                if row["fire_id"]:
                    self._by_fire[row["fire_id"]].append(row)
        return iter(self._by_fire.get(fire_id, []))

    def _early(self, starts: dict[str, list[dict[str, Any]]]) -> None:
        tolerance = self.info.max_skew + EPSILON
        for fire_id, attempts in starts.items():
            instance = self.instances.get(fire_id)
            if instance is None:
                continue
            deadline = self.deadline(instance)
            if deadline is None:
                continue
            first = attempts[0]
            if first["t"] < deadline - tolerance:
                self.violations.append(
                    Violation(
                        "early",
                        f"{instance.sender}: fired {deadline - first['t']:.3f} s before its "
                        f"deadline (tolerance {self.info.max_skew:.3f} s)",
                        (instance.row, first["seq"]),
                    )
                )

    def check_lost_and_late(self, bound: Bound) -> None:
        fired_roots: dict[str, dict[str, Any]] = {}
        for fire_id in self.fires_ok:
            if fire_id not in self.instances:
                continue
            root = self.root(fire_id)
            start = min(
                (
                    r
                    for r in self.rows_for_fire(fire_id)
                    if r["kind"] == "fire" and r["outcome"] == "fire_start"
                ),
                key=lambda r: r["t"],
            )
            if root not in fired_roots or start["t"] < fired_roots[root]["t"]:
                fired_roots[root] = start
        roots: dict[str, list[Instance]] = defaultdict(list)
        for instance in self.instances.values():
            roots[self.root(instance.id)].append(instance)
        for root, members in roots.items():
            head = self.instances[root]
            deadline = self.deadline(head)
            if deadline is None:
                continue
            if root in fired_roots:
                if not any(member.resurrected for member in members):
                    self._late(head, members, deadline, fired_roots[root], bound)
                continue
            reason = self._why_not_fired(members)
            if reason is None:
                continue
            if reason != "pending":
                self.declared[reason] += 1
                continue
            excused = self._excused(members, deadline, self.end)
            if deadline + bound.value + excused < self.end:
                self.violations.append(
                    Violation(
                        "lost",
                        f"{head.sender}: {', '.join(m.id for m in members)} due at {deadline:.3f} "
                        f"never fired (bound {bound.value:.3f} s, excused {excused:.3f} s)",
                        tuple(m.row for m in members),
                    )
                )

    def _why_not_fired(self, members: list[Instance]) -> str | None:
        """None if the timer ended legitimately, a declared-loss class, or "pending"."""
        for member in members:
            if member.declared:
                return None
            if member.id in self.fallback_lost:
                return "fallback_lost_on_crash"
        for member in members:
            order = (
                member.origin if member.origin in {"redis", "custom"} else f"fallback:{member.pod}"
            )
            for write in self.writes.get(member.sender, []):
                if write.order != order or write.instance in {m.id for m in members}:
                    continue
                newer = (
                    self._redis_order(write.start, write.version)
                    > self._redis_order(member.written, member.version)
                    if order == "redis"
                    else write.done > member.done
                )
                if newer:
                    return None  # superseded (or cancelled) by a later write
            if member.origin == "fallback" and self._merge_skipped(member):
                return None
            if any(t >= member.written for t in self.unacked_cancels.get(member.sender, [])):
                return None  # a cancel that timed out may have landed: either outcome is fine
        for member in members:
            if member.claims:
                claim = self.rows[member.claims[-1]]
                if self.delivery.get(claim["pod"]) == "at_most_once" and self._crashed_after(claim):
                    return "crash_between_claim_and_fire"
            if member.origin == "custom" and self._claim_in_flight_at_crash(member):
                return "crash_between_claim_and_fire"
            lost = member.origin in self.in_redis and self.restart_loses(
                member.written, member.version, member.sender
            )
            if lost:
                return f"{lost['cause']}_lost_write"
        return "pending"

    def _claim_in_flight_at_crash(self, member: Instance) -> bool:
        """An at-most-once pod died while it may have been deleting this due timer: its delete
        may have landed without the claim ever being reported."""
        deadline = self.deadline(member)
        if deadline is None:
            return False
        for pod, crashes in self.crashes.items():
            if self.delivery.get(pod) != "at_most_once":
                continue
            if any(
                deadline - self.info.max_skew <= c <= deadline + self.recovery_allowance + 5
                for c in crashes
            ):
                return True
        return False

    def _merge_skipped(self, member: Instance) -> bool:
        for row in self.rows:
            if (
                row["kind"] == "reconciled"
                and row["sender_id"] == member.sender
                and row["pod"] == member.pod
                and row["t"] >= member.done
                and not row["d"].get("applied")
            ):
                return True
        return False

    def _crashed_after(self, claim: dict[str, Any]) -> bool:
        crashes = self.crashes.get(claim["pod"], [])
        done = [
            r
            for r in self.rows_for_fire(claim["fire_id"])
            if r["kind"] == "fire" and r["outcome"] == "fire_done"
        ]
        return any(c >= claim["t"] for c in crashes) and not done

    def _excused(
        self, members: list[Instance], start: float, end: float, origin: str | None = None
    ) -> float:
        spans: list[tuple[float, float]] = []
        for member in members:
            spans += self.unreachable(origin or member.origin, member.pod)
            if (origin or member.origin) == "redis":
                # A claim that timed out may have leased it anyway: held until the lease lapses.
                spans += [
                    (t, t + self.info.service.lease_seconds)
                    for t, now, lease_until in self.unacked_claims
                    if lease_until is not None and member.scheduled_time <= now and t >= member.done
                ]
            for seq in member.claims:
                claim = self.rows[seq]
                if self._crashed_after(claim) or any(
                    claim["t"] <= c for c in self.crashes.get(claim["pod"], [])
                ):
                    spans.append((claim["t"], claim["t"] + self.info.service.lease_seconds))
        return _overlap(_union(spans), start, end)

    def _late(
        self,
        head: Instance,
        members: list[Instance],
        deadline: float,
        fire: dict[str, Any],
        bound: Bound,
    ) -> None:
        """Late, judged by the copy that fired: out of reach only while its store was."""
        fired = float(fire["t"])
        excused = self._excused(members, deadline, fired, fire["origin"] or "redis")
        lateness = fired - deadline - excused
        self.lateness.append(fired - deadline)
        self.fires.append(
            {
                "sender_id": head.sender,
                "fire_id": fire["fire_id"],
                "pod": fire["pod"],
                "origin": fire["origin"],
                "deadline": deadline,
                "fired": fired,
                "lateness": fired - deadline,
                "excused": excused,
                "row": fire["seq"],
            }
        )
        if lateness > bound.value + EPSILON:
            self.violations.append(
                Violation(
                    "late",
                    f"{head.sender}: fired {fired - deadline:.3f} s after its deadline "
                    f"({excused:.3f} s excused; bound {bound.value:.3f} s)",
                    (head.row,),
                )
            )

    def check_fallback(self, activation: Bound, deactivation: Bound) -> dict[str, str]:
        """Every fault left a trace; every stretch without Redis activated each affected pod's
        fallback once, in time, and was merged back in time once Redis returned."""
        exercised: dict[str, str] = {}
        pods = sorted(set(self.starts))
        cut_off: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        for window in self.windows:
            affected = self._affected(window, pods)
            evidence = self._exercised(window, affected)
            exercised[f"{window.kind}@{window.start:.1f}s"] = evidence
            if evidence.startswith("NOT"):
                self.violations.append(
                    Violation(
                        "not_exercised",
                        f"{window.kind} at {window.start:.1f}s: {evidence}",
                        (window.row,),
                    )
                )
            if window.kind == "slow_redis":
                # Only the part where replies come after the socket timeout cuts pods off.
                for start, end in self.timeout_spans():
                    if start < window.end and window.start < end:
                        for pod in affected:
                            cut_off[pod].append(
                                (max(start, window.start), min(end, window.end), window.row)
                            )
            elif self._reachability_fault(window):
                for pod in affected:
                    cut_off[pod].append((window.start, window.end, window.row))
        straggle = self.info.socket_timeout + 2 * self.info.latency  # a call still in flight
        for pod in pods:
            if pod in self.without_fallback:
                continue
            stretches = _union_rows(cut_off.get(pod, []))
            for index, (start, end, row) in enumerate(stretches):
                after = stretches[index + 1][0] if index + 1 < len(stretches) else math.inf
                self._one_stretch(pod, start, end, row, after, activation, deactivation, straggle)
            for t, seq in self.activations.get(pod, []):
                if not any(s - EPSILON <= t <= e + straggle for s, e, _ in stretches):
                    self.violations.append(
                        Violation(
                            "spurious_fallback",
                            f"{pod}: fallback activated at {t:.3f} with no fault",
                            (seq,),
                        )
                    )
        return exercised

    def _one_stretch(
        self,
        pod: str,
        start: float,
        end: float,
        row: int,
        next_start: float,
        activation: Bound,
        deactivation: Bound,
        straggle: float,
    ) -> None:
        """One stretch of time when `pod` could not reach Redis: activate in time, once, and
        merge back in time (unless Redis is lost again before the bound)."""
        activations = [
            (t, seq)
            for t, seq in self.activations.get(pod, [])
            if start - EPSILON <= t <= end + straggle
        ]
        if end - start >= activation.value and self._alive_through(
            pod, start, start + activation.value
        ):
            timely = any(t <= start + activation.value for t, _ in activations)
            if not timely and not self._active_at(pod, start):
                self.violations.append(
                    Violation(
                        "fallback_activation",
                        f"{pod}: no fallback within {activation.value:.3f} s of losing Redis "
                        f"at {start:.3f}",
                        (row,),
                    )
                )
        inside = [
            (t, seq)
            for t, seq in self.deactivations.get(pod, [])
            if start + straggle < t < end - EPSILON
        ]
        for t, seq in inside:
            again = [a for a in activations if a[0] > t]
            if again and not self._crashed_between(pod, t, again[0][0]):
                self.violations.append(
                    Violation(
                        "fallback_flapping",
                        f"{pod}: fallback deactivated at {t:.3f} and activated again at "
                        f"{again[0][0]:.3f} while Redis was still out of reach",
                        (seq, again[0][1]),
                    )
                )
        if not activations and not self._active_at(pod, start):
            return
        last_on = max((t for t, _ in activations), default=start)
        if self._crashed_between(pod, last_on, end):
            # The crash took the fallback with it; the pod's next incarnation starts on Redis
            # and owes a merge only if it activated a fallback of its own (then `last_on` is
            # that activation, after the crash). Swarm seed 1035: a pod crashed in a pause.
            return
        # A call sent before Redis came back may time out after it, and activate then: the
        # probes that end the outage start from that activation (swarm seed 2538).
        back = max(end, last_on)
        limit = back + deactivation.value
        merged = any(end - EPSILON <= t <= limit for t, _ in self.deactivations.get(pod, []))
        due = limit < min(self.end, next_start) and self._alive_through(pod, end, limit)
        if due and not merged:
            self.violations.append(
                Violation(
                    "fallback_deactivation",
                    f"{pod}: fallback still active {deactivation.value:.3f} s after Redis "
                    f"came back at {end:.3f}"
                    + (f" (activated late, at {last_on:.3f})" if last_on > end else ""),
                    (row,),
                )
            )

    def stale_fires(self) -> int:
        """Fires a user would call wrong: the conversation had been re-armed or ended (on any
        pod, in Redis or in some pod's fallback memory) before the claim started.

        Not a violation: within each store's order every claim was current, and a partial
        outage cannot avoid some (the cut-off pod holds the newer write where no other pod can
        see it). It is what degraded-aware routing (`refusing_fallback`) drives towards 0.
        """
        latest: dict[str, tuple[float, str | None]] = {}
        stale = 0
        events = sorted(
            (
                (_started(row), 0, row) if row["kind"] == "claim" else (float(row["t"]), 1, row)
                for row in self.rows
                if row["kind"] in {"schedule", "cancel", "claim"}
            ),
            key=lambda item: (item[0], item[1]),
        )
        for _, order, row in events:
            sender = row["sender_id"]
            if order == 1:
                instance = row["instance"] if row["kind"] == "schedule" else None
                latest[sender] = (float(row["t"]), instance)
            elif (row["attempt"] or 1) == 1 and sender in latest:
                stale += latest[sender][1] != row["fire_id"]
        return stale

    def timeline(self) -> list[dict[str, Any]]:
        """Fault windows, fallback stretches and pod downtime, as spans for a report."""
        spans = [
            {"lane": "faults", "what": w.kind if not w.target else f"{w.kind} {w.target}",
             "kind": w.kind, "start": w.start, "end": w.end}
            for w in self.windows
        ]  # fmt: skip
        for pod in sorted(set(self.starts) | set(self.activations)):
            for start, end in self._pod_down(pod):
                spans.append(
                    {
                        "lane": pod,
                        "what": "down",
                        "kind": "down",
                        "start": start,
                        "end": min(end, self.end),
                    }
                )
            offs = sorted(t for t, _ in self.deactivations.get(pod, []))
            crashes = sorted(self.crashes.get(pod, []))
            for start, _ in self.activations.get(pod, []):
                ends = [t for t in (*offs, *crashes) if t >= start]
                spans.append(
                    {"lane": pod, "what": "fallback", "kind": "fallback", "start": start,
                     "end": min(ends) if ends else self.end}
                )  # fmt: skip
        return spans

    def _reachability_fault(self, window: Window) -> bool:
        if window.kind in REACH_FAULTS or window.kind == "partial_outage":
            return True
        return window.kind == "slow_redis" and self._times_out(window)

    def _affected(self, window: Window, pods: list[str]) -> list[str]:
        if window.kind in {"partial_outage", "pod_crash", "crash_mid_claim"}:
            return [window.target] if window.target else []
        if window.kind in REACH_FAULTS or window.kind == "slow_redis":
            return pods
        return []

    def _exercised(self, window: Window, affected: list[str]) -> str:
        if window.kind in {"pod_crash", "crash_mid_claim"}:
            crashed = any(
                window.start - EPSILON <= t <= window.end + EPSILON
                for t in self.crashes.get(window.target or "", [])
            )
            if not crashed and not self._alive_through(
                window.target or "", window.start, window.start
            ):
                return "the pod was already down"
            return (
                "pod crashed and restarted" if crashed else "NOT exercised: the pod never crashed"
            )
        if self._reachability_fault(window) and set(affected) <= self.without_fallback:
            failed = sum(
                1
                for pod in affected
                for t in self.failed_calls.get(pod, [])
                if window.start <= t <= window.end
            )
            return f"store unreachable, {failed} message(s) failed (no fallback configured)"
        if self._reachability_fault(window):
            hits = sum(
                1
                for pod in affected
                for t, _ in self.activations.get(pod, [])
                if window.start - EPSILON <= t <= window.end
            ) + sum(1 for pod in affected if self._active_at(pod, window.start))
            if hits:
                back = sum(
                    1
                    for pod in affected
                    if any(t >= window.start for t, _ in self.deactivations.get(pod, []))
                )
                return f"fallback activated on {hits} pod(s), deactivated on {back}"
            # A pod can only notice the fault while it runs: one that was down for all but a
            # moment of it had no call to fail (swarm seed 2349: a pod cut off while crashed).
            up = max(
                (self._longest_up(pod, window.start, window.end) for pod in affected), default=0.0
            )
            if up < self.info.socket_timeout + self.info.service.poll_interval * 2:
                return "too short to activate the fallback while an affected pod was up"
            return "NOT exercised: no pod activated its fallback"
        return "applied"

    def _longest_up(self, pod: str, start: float, end: float) -> float:
        """The longest stretch of [start, end] during which `pod` was running."""
        free, cursor = 0.0, start
        for down_start, down_end in _union(self._pod_down(pod)):
            if down_end <= cursor or down_start >= end:
                continue
            free = max(free, down_start - cursor)
            cursor = max(cursor, down_end)
        return max(free, end - cursor)

    def _alive_through(self, pod: str, start: float, end: float) -> bool:
        return not any(
            down_start <= end and down_end >= start for down_start, down_end in self._pod_down(pod)
        )

    def _crashed_between(self, pod: str, start: float, end: float) -> bool:
        return any(start <= t <= end for t in self.crashes.get(pod, []))

    def _active_at(self, pod: str, when: float) -> bool:
        last_on = max(
            (t for t, _ in self.activations.get(pod, []) if t < when - EPSILON), default=None
        )
        if last_on is None:
            return False
        last_off = max(
            (t for t, _ in self.deactivations.get(pod, []) if t < when), default=-math.inf
        )
        crashed = any(last_on < t < when for t in self.crashes.get(pod, []))
        return last_off < last_on and not crashed


def _started(row: dict[str, Any]) -> float:
    """True time a call began: its end minus its duration on the pod's clock.

    A pod clock that steps during the call (a skew fault) can make that duration wrong, even
    negative; it is clamped at 0, which only ever makes a call look shorter, never longer.
    """
    return float(row["t"]) - max(0.0, row["elapsed"] or 0.0)


def _union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _union_rows(spans: Iterable[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Like `_union`, keeping the row of the first span of each merged stretch."""
    merged: list[tuple[float, float, int]] = []
    for start, end, row in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end), merged[-1][2])
        else:
            merged.append((start, end, row))
    return merged


def _intersect(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if start < end:
                out.append((start, end))
    return _union(out)


def _overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans)


def lateness_bound(info: RunInfo, backlog: int, slow: float, one_by_one: int) -> Bound:
    """How late a fire may be once a healthy pod can reach its timer.

    `one_by_one`: the largest batch a five-method store had to claim timer by timer (a
    conditional delete each); 0 for stores that claim a batch in one call.
    """
    return Bound(
        "lateness bound",
        "P(1+j) + S + 4λ + 2σ + f + p + τ + N/r + B(2λ+σ)",
        (
            ("poll interval P(1+j)", info.service.poll_interval * (1 + info.service.poll_jitter)),
            ("clock skew S", info.max_skew),
            ("round trips 4λ", 4 * info.latency),
            ("slow replies 2σ", 2 * slow),
            ("fire duration f", info.fire_duration),
            ("probe interval p", info.service.probe_interval),
            ("socket timeout τ", info.socket_timeout),
            ("backlog N/r", backlog / info.service.recovery_rate),
            ("claims one by one B(2λ+σ)", one_by_one * (2 * info.latency + slow)),
        ),
    )


def activation_bound(info: RunInfo, slow: float) -> Bound:
    """How soon a pod must notice that Redis is gone: its current call's slow reply, one
    poll interval, then one socket timeout."""
    return Bound(
        "fallback activation bound",
        "σ + P(1+j) + τ + 2λ",
        (
            ("slow reply σ", slow),
            ("poll interval P(1+j)", info.service.poll_interval * (1 + info.service.poll_jitter)),
            ("socket timeout τ", info.socket_timeout),
            ("round trip 2λ", 2 * info.latency),
        ),
    )


MERGE_CHUNK = 256
"""Journal entries a fallback merges per round trip (`store.fallback.RECONCILE_CHUNK`)."""


SCRIPT_ROUND_TRIPS = 3
"""Round trips of one script call on a Redis that lost its script cache (a restart or a
failover): EVALSHA meets NOSCRIPT, then SCRIPT LOAD and EVALSHA again (one round trip where
they are pipelined together, two on a cluster client)."""


PROBE_ROUND_TRIPS = 3
"""Round trips of the probe that ends an outage: the outage closed the pool's connections, so
the PING waits for a new connection's TCP handshake and its Redis handshake (HELLO, or CLIENT
SETINFO and SELECT pipelined) first."""


def merge_round_trips(journal: int) -> int:
    """Sequential round trips from a pod's probe to its deactivation: the probe, releasing the
    leases of fires that ended during the outage, then each chunk of the journal (each a
    script call that may meet an empty script cache)."""
    chunks = max(1, math.ceil(journal / MERGE_CHUNK))
    return PROBE_ROUND_TRIPS + SCRIPT_ROUND_TRIPS * (1 + chunks)


def deactivation_bound(info: RunInfo, slow: float, journal: int) -> Bound:
    """How soon after Redis returns a pod must have merged its outage back.

    Its next probe comes at its first poll once a probe interval has passed since the last
    failed one, at most p + P(1+j) after Redis returns; then the merge's round trips.
    """
    trips = merge_round_trips(journal)
    return Bound(
        "fallback deactivation bound",
        "p + P(1+j) + R(2λ+σ)",
        (
            ("probe interval p", info.service.probe_interval),
            ("poll interval P(1+j)", info.service.poll_interval * (1 + info.service.poll_jitter)),
            (f"merge round trips R={trips}", trips * (2 * info.latency + slow)),
        ),
    )


def check(rows: list[dict[str, Any]], info: RunInfo) -> Verdict:
    """Judge parsed history rows (dicts with a parsed `d` detail) of one run."""
    checker = _Checker(rows, info)
    checker.collect()
    backlog = _peak_backlog(checker)
    slow = checker.slowest_answer()
    one_by_one = max(
        (r["d"].get("batch", 0) for r in rows if r["kind"] == "claim" and r["origin"] == "custom"),
        default=0,
    )
    bound = lateness_bound(info, backlog, slow, one_by_one)
    activation = activation_bound(info, slow)
    journal = max(
        (
            int(r["d"].get("applied", 0)) + int(r["d"].get("skipped", 0))
            for r in rows
            if r["kind"] == "fallback_deactivated"
        ),
        default=0,
    )
    deactivation = deactivation_bound(info, slow, journal)
    checker.recovery_allowance = deactivation.value
    checker.lateness_allowance = bound.value
    checker.check_claims_and_fires()
    checker.check_lost_and_late(bound)
    checker.check_failed_writes()
    lags = _loop_stalls(rows, info, checker.violations)
    exercised = checker.check_fallback(activation, deactivation)
    lateness = sorted(checker.lateness)
    fires = sum(len(v) for v in checker.fires_ok.values())
    if not checker.instances:
        checker.violations.append(
            Violation("vacuous", "no timer was ever armed: the run proves nothing", ())
        )
    elif not fires:
        checker.violations.append(
            Violation(
                "vacuous",
                f"{len(checker.instances)} timers armed and none ever fired: the run proves "
                "nothing",
                (),
            )
        )
    stats: dict[str, float] = {
        "instances": len(checker.instances),
        "fires": fires,
        "raw_refires": checker.raw_refires,
        "stale_fires": checker.stale_fires(),
        "activations": sum(len(v) for v in checker.activations.values()),
        "lateness_p50": lateness[len(lateness) // 2] if lateness else 0.0,
        "lateness_p99": lateness[int(len(lateness) * 0.99)] if lateness else 0.0,
        "lateness_max": lateness[-1] if lateness else 0.0,
        "loop_lag_max": max(lags, default=0.0),
    }
    bounds = [bound, activation, deactivation]
    return Verdict(
        info,
        checker.violations,
        checker.declared,
        exercised,
        bounds,
        stats,
        checker.fires,
        checker.timeline(),
    )


def _loop_stalls(
    rows: list[dict[str, Any]], info: RunInfo, violations: list[Violation]
) -> list[float]:
    """Every pod's worst event-loop lag per window (real processes record them); a lag over
    the bound is a violation. Returns the lags."""
    lags = []
    for row in rows:
        if row["kind"] != "loop_lag":
            continue
        lag = float(row["d"].get("lag", 0.0))
        lags.append(lag)
        if lag > info.loop_stall_bound:
            violations.append(
                Violation(
                    "loop_stall",
                    f"{row['pod']}: its event loop stalled {lag:.2f} s (bound "
                    f"{info.loop_stall_bound:g} s): every request and timer of that pod waited",
                    (row["seq"],),
                )
            )
    return lags


def _peak_backlog(checker: _Checker) -> int:
    """The most timers that came due inside one window when no pod could reach them."""
    peak = 0
    for start, end in checker.unreachable("redis", ""):
        due = 0
        for instance in checker.instances.values():
            deadline = checker.deadline(instance)
            if deadline is not None and start <= deadline <= end:
                due += 1
        peak = max(peak, due)
    return peak


def load_rows(history: Path | IO[str]) -> list[dict[str, Any]]:
    """History rows as dicts, NaN as None, `detail` parsed into `d`."""
    frame = read_history(history)
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in record.items()}
        for record in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    for row in records:
        row["d"] = json.loads(row["detail"]) if row["detail"] else {}
        for key in ("version", "attempt", "seq"):
            if row[key] is not None:
                row[key] = int(row[key])
    return records


def check_run(run_dir: Path) -> Verdict:
    """Judge the run in `run_dir` (its `history.csv` and `run.json`)."""
    info = RunInfo.load(run_dir / "run.json")
    return check(load_rows(run_dir / "history.csv"), info)
