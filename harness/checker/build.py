"""Building the model: one pass over the history for what it announces, one for the claims.

The second pass needs the first complete: a claim is judged against every write, and a claim
can reveal what no row announced (a write whose reply never came but which landed: a *ghost*
instance, or a newer write that supersedes what its sender had armed). Both passes only
collect; no rule runs here.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from harness.checker.model import (
    IN_STORE_ORDER,
    Instance,
    Model,
    Restart,
    Row,
    Window,
    Write,
    started_at,
)
from harness.checker.spans import EPSILON
from record.runinfo import RunInfo
from store.redis.keys import KeyScheme


def build_model(rows: list[Row], info: RunInfo) -> Model:
    """The model of the history `rows` of a run described by `info`."""
    builder = _Builder(rows, info)
    builder.announced()
    builder.claimed()
    return builder.model()


class _Builder:
    """Mutable state of the two passes; `model()` freezes it."""

    def __init__(self, rows: list[Row], info: RunInfo) -> None:
        self.rows = rows
        self.info = info
        self.end = info.end or (rows[-1]["t"] if rows else 0.0)
        self.instances: dict[str, Instance] = {}
        self.parent: dict[str, str] = {}
        self.claims: dict[str, list[int]] = defaultdict(list)
        self.declared: dict[str, str] = {}
        self.writes: dict[str, list[Write]] = defaultdict(list)
        self.windows: list[Window] = []
        self.restarts: list[Restart] = []
        self.crashes: dict[str, list[float]] = defaultdict(list)
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.activations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.deactivations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.delivery: dict[str, str] = {}
        self.without_fallback: set[str] = set()
        self.fallback_lost: set[str] = set()
        self.unacked: dict[tuple[str, float], list[int]] = defaultdict(list)
        self.unacked_copy: dict[tuple[str, float], str] = {}
        self.unacked_claims: list[tuple[float, float, float | None]] = []
        self.limbo: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.unacked_cancels: dict[str, list[float]] = defaultdict(list)
        self.failed_calls: dict[str, list[float]] = defaultdict(list)
        self.failed_writes: list[tuple[Row, float]] = []
        self.call_failures: dict[tuple[str, str], list[Row]] = defaultdict(list)
        self.store_errors: list[Row] = []
        self.unknown_claims: list[Row] = []
        self.fire_starts: dict[str, list[Row]] = defaultdict(list)
        self.fires_ok: dict[str, list[Row]] = defaultdict(list)
        self.policy_outcomes: list[tuple[str, str]] = []

    # -- logical timers: union-find over instance ids -------------------------------------

    def root(self, instance: str) -> str:
        while self.parent.get(instance, instance) != instance:
            instance = self.parent[instance]
        return instance

    def join(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra

    # -- pass 1: what the rows announce ------------------------------------------------------

    def announced(self) -> None:
        open_faults: dict[int, Row] = {}
        last_message: dict[tuple[str, str], Row] = {}
        restarts: list[Row] = []
        for row in self.rows:
            kind = row["kind"]
            if kind == "schedule":
                self._add_instance(row)
                self._add_write(row, row["instance"])
            elif kind == "cancel":
                self._add_write(row, None)
            elif kind == "reconciled":
                self._reconciled(row)
            elif kind == "message":
                self._message(row, last_message)
            elif kind == "call_failed":
                self.call_failures[(row["pod"], row["sender_id"])].append(row)
            elif kind == "store_error":
                self.store_errors.append(row)
            elif kind == "write_unacknowledged":
                self._unacknowledged(row)
            elif kind == "pod_crash":
                self._pod_crash(row)
            elif kind == "pod_start":
                self.starts[row["pod"]].append(row["t"])
                self.delivery[row["pod"]] = row["d"].get("delivery", "at_least_once")
                if not row["d"].get("fallback", True):
                    self.without_fallback.add(row["pod"])
            elif kind == "fallback_activated":
                self.activations[row["pod"]].append((row["t"], row["seq"]))
            elif kind == "fallback_deactivated":
                self.deactivations[row["pod"]].append((row["t"], row["seq"]))
            elif kind == "merge_interrupted":
                for instance in row["d"].get("instances", ()):
                    self.limbo[instance].append((started_at(row), row["pod"]))
            elif kind == "redis_restart":
                restarts.append(row)
            elif kind == "fault_start":
                open_faults[row["d"]["fault_index"]] = row
            elif kind == "fault_end":
                # Matched by index alone: two faults of one kind may overlap (two partial
                # outages of different pods), and each ends its own window.
                start = open_faults.pop(row["d"]["fault_index"], None)
                if start is not None:
                    self._window(start, row["t"])
        for start in open_faults.values():
            self._window(start, self.end)
        self.restarts = [self._restart(row) for row in restarts] + self._failovers()

    def _message(self, row: Row, last_message: dict[tuple[str, str], Row]) -> None:
        if row["scheduled_time"] is not None or row["d"].get("end"):
            last_message[(row["pod"], row["sender_id"])] = row
        elif row["result"] == "no_pod":
            self.failed_writes.append((row, row["t"]))
        elif row["result"] == "error":
            self.failed_calls[row["pod"]].append(row["t"])
            # The write's outcome is unknown (its pod crashed, or Redis failed mid-call).
            sent = last_message.get((row["pod"], row["sender_id"]))
            self.failed_writes.append((row, row["t"] if sent is None else sent["t"]))
            if sent is not None and sent["d"].get("end"):
                self.unacked_cancels[sent["sender_id"]].append(sent["t"])
            elif sent is not None:
                self.unacked[(sent["sender_id"], sent["scheduled_time"])].append(sent["seq"])

    def _unacknowledged(self, row: Row) -> None:
        op = row["d"].get("op")
        if op == "cancel":
            self.unacked_cancels[row["sender_id"]].append(row["t"])
        elif op == "schedule":
            self.unacked[(row["sender_id"], row["scheduled_time"])].append(row["seq"])
        elif op == "claim":
            self.unacked_claims.append((row["t"], row["d"]["now"], row["d"].get("lease_until")))

    def _pod_crash(self, row: Row) -> None:
        self.crashes[row["pod"]].append(row["t"])
        self.fallback_lost.update(row["d"].get("fallback_lost", []))
        # A claim in flight when the pod died may have leased due timers anyway.
        if row["pod_time"] is not None:
            now = row["pod_time"]
            self.unacked_claims.append((row["t"], now, now + self.info.service.lease_seconds))

    def _window(self, start_row: Row, end: float) -> None:
        detail = start_row["d"]
        self.windows.append(
            Window(
                detail.get("fault", ""),
                start_row["t"],
                end,
                detail.get("target"),
                detail,
                start_row["seq"],
            )
        )

    def _restart(self, row: Row) -> Restart:
        """A restart row, dated from its fault window's start: when the process went down."""
        crash = next(
            (
                w.start
                for w in self.windows
                if w.kind == "redis_restart" and w.start <= row["t"] <= w.end + EPSILON
            ),
            None,
        )
        detail = row["d"]
        return Restart(
            t=row["t"],
            crash=crash or row["t"],
            kept_until=detail.get("kept_until"),
            kept_versions=detail.get("kept_versions") or {},
            cause=detail.get("cause", "restart"),
            row=row["seq"],
        )

    def _failovers(self) -> list[Restart]:
        """A failover as a restart that kept what had replicated by the kill.

        Replication is asynchronous: the promoted replica may lack the last writes the old
        master acknowledged. The fault records how far back that may reach
        (`replication_window`); an unfired write from that window is a declared loss.
        """
        return [
            Restart(
                t=window.start,
                crash=window.start,
                kept_until=window.start - float(window.detail.get("replication_window", 0.0)),
                kept_versions={},
                cause="failover",
                row=window.row,
            )
            for window in self.windows
            if window.kind == "redis_outage" and window.detail.get("mode") == "failover"
        ]

    def _add_instance(self, row: Row) -> None:
        instance, origin = row["instance"], row["origin"]
        item = Instance(
            id=instance,
            sender=row["sender_id"],
            origin=origin,
            pod=row["pod"],
            version=int(row["version"] or 0),
            scheduled_time=row["scheduled_time"],
            start=started_at(row),
            done=row["t"],
            row=row["seq"],
            timeout=row["d"].get("timeout"),
            payload=(row["session_id"], row["d"].get("metadata")),
        )
        self._keep(item)
        key = (item.sender, item.scheduled_time)
        if origin == "fallback" and key in self.unacked:
            self.unacked_copy[key] = instance  # the fallback copy of a write that timed out

    def _keep(self, item: Instance) -> None:
        """Record an instance unless its id is known (the first row that armed it wins)."""
        if item.id not in self.instances:
            self.instances[item.id] = dataclasses.replace(
                item, written=item.start if math.isnan(item.written) else item.written
            )
        self.parent.setdefault(item.id, item.id)

    def _add_write(self, row: Row, instance: str | None) -> None:
        origin = row["origin"]
        order = f"fallback:{row['pod']}" if origin == "fallback" else origin or "custom"
        self.writes[row["sender_id"]].append(
            Write(
                row["sender_id"],
                order,
                int(row["version"] or 0),
                row["t"],
                row["seq"],
                instance,
                start=started_at(row),
            )
        )

    def _reconciled(self, row: Row) -> None:
        """A merged outage state: a new Redis instance (or tombstone), same logical timer."""
        if not row["d"].get("applied"):
            return
        instance = row["instance"]
        version = int(row["version"] or 0)
        # Applied at some point of the merge call, which may have begun before a Redis
        # restart that then lost it (swarm seed 2217): ordered from the call's start.
        began = started_at(row)
        if instance and instance in self.instances:
            # Merged under its own id: the same instance now lives in Redis.
            self.instances[instance] = dataclasses.replace(
                self.instances[instance], origin="redis", version=version, done=row["t"],
                written=began,
            )  # fmt: skip
        elif instance and row["scheduled_time"] is not None:
            source = row["d"].get("from_instance")
            copied = self.instances.get(source) if source else None
            self._keep(
                Instance(
                    id=instance,
                    sender=row["sender_id"],
                    origin="redis",
                    pod=row["pod"],
                    version=version,
                    scheduled_time=row["scheduled_time"],
                    start=began,
                    done=row["t"],
                    row=row["seq"],
                    payload=None if copied is None else copied.payload,
                )
            )
            if source:
                self.parent.setdefault(source, source)
                self.join(source, instance)
        self.writes[row["sender_id"]].append(
            Write(row["sender_id"], "redis", version, row["t"], row["seq"], instance, began)
        )

    # -- pass 2: what the claims and fires reveal -------------------------------------------

    def claimed(self) -> None:
        for row in self.rows:
            kind = row["kind"]
            if kind == "claim":
                self._claim(row)
            elif kind == "fire" and row["outcome"] == "fire_start":
                self.fire_starts[row["fire_id"]].append(row)
            elif kind == "fire" and row["outcome"] == "fire_done" and row["result"] == "ok":
                self.fires_ok[row["fire_id"]].append(row)
            elif kind in {"skip", "give_up"}:
                reason = "skipped_by_policy" if kind == "skip" else "gave_up"
                self.policy_outcomes.append((row["fire_id"], reason))
                if row["fire_id"] in self.instances:
                    self.declared[row["fire_id"]] = reason

    def _claim(self, row: Row) -> None:
        instance = self.instances.get(row["fire_id"]) or self._ghost(row)
        if instance is None:
            self.unknown_claims.append(row)
            return
        self.claims[instance.id].append(row["seq"])
        self._landed(instance, row)

    def _ghost(self, row: Row) -> Instance | None:
        """An instance no schedule announced: a write that timed out but landed, or a bug
        (None: no write explains it)."""
        key = (row["sender_id"], row["scheduled_time"])
        copy = self.unacked_copy.get(key)
        known = [i for i in self.instances.values() if (i.sender, i.scheduled_time) == key]
        unacked = self.unacked.get(key)
        if copy is None and not known and not unacked:
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
            announced=False,
        )
        partner = copy or (known[0].id if known else None)
        if partner is None and unacked:
            # The write's reply never came and no copy exists: the ghost is the only one.
            sent = self.rows[unacked[0]]
            payload = (sent["session_id"], sent["d"].get("metadata"))
            item = dataclasses.replace(
                item,
                start=sent["t"],
                timeout=sent["d"].get("timeout"),
                payload=payload if sent["kind"] == "message" else None,
            )
        if unacked:
            item = dataclasses.replace(item, written=self.rows[unacked[0]]["t"])
        self._keep(item)
        if partner is not None:
            self.join(partner, item.id)
        return self.instances[item.id]

    def _landed(self, instance: Instance, claim: Row) -> None:
        """A claim from the store of a write whose reply never came (its pod crashed mid-call,
        or it timed out, into the fallback or to the user): it landed after all, and
        superseded whatever its sender had armed there before (swarm seeds 1122, 1848; the
        example store's seed 2). It landed by the time it was claimed, at the latest."""
        order = claim["origin"]
        known = self.writes[instance.sender]
        if order not in IN_STORE_ORDER or any(
            w.order == order and w.instance == instance.id for w in known
        ):
            return
        version = int(claim["version"] or 0)
        known.append(
            Write(instance.sender, order, version, started_at(claim), claim["seq"], instance.id,
                  instance.written, revealed=claim["seq"])
        )  # fmt: skip

    # -- freezing ---------------------------------------------------------------------------

    def model(self) -> Model:
        instances = {
            key: dataclasses.replace(
                item, claims=tuple(self.claims.get(key, ())), declared=self.declared.get(key)
            )
            for key, item in self.instances.items()
        }
        return Model(
            rows=tuple(self.rows),
            info=self.info,
            end=self.end,
            instances=instances,
            timers={key: self.root(key) for key in self.parent},
            writes=_frozen(self.writes),
            windows=tuple(self.windows),
            restarts=tuple(self.restarts),
            crashes=_frozen(self.crashes),
            starts=_frozen(self.starts),
            activations=_frozen(self.activations),
            deactivations=_frozen(self.deactivations),
            delivery=dict(self.delivery),
            without_fallback=frozenset(self.without_fallback),
            fallback_lost=frozenset(self.fallback_lost),
            unacked=_frozen(self.unacked),
            unacked_copy=dict(self.unacked_copy),
            unacked_claims=tuple(self.unacked_claims),
            limbo=_frozen(self.limbo),
            unacked_cancels=_frozen(self.unacked_cancels),
            failed_calls=_frozen(self.failed_calls),
            failed_writes=tuple(self.failed_writes),
            call_failures=_frozen(self.call_failures),
            store_errors=tuple(self.store_errors),
            unknown_claims=tuple(self.unknown_claims),
            fire_starts=_frozen(self.fire_starts),
            fires_ok=_frozen(self.fires_ok),
            by_fire=_frozen(_by_fire(self.rows)),
            policy_outcomes=tuple(self.policy_outcomes),
            in_redis=frozenset({"redis", "custom"} if self.info.custom_in_redis else {"redis"}),
            keys=KeyScheme(self.info.key_prefix, self.info.buckets),
        )


def _by_fire(rows: list[Row]) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row["fire_id"]:
            found[row["fire_id"]].append(row)
    return found


def _frozen(groups: Mapping[Any, list[Any]]) -> dict[Any, tuple[Any, ...]]:
    return {key: tuple(values) for key, values in groups.items()}
