"""Liveness: every current timer fires, and not later than the lateness bound allows.

Rules: `lost`, `late`. Declared: fallback timers a crash took, at-most-once crashes between
claim and fire, what a Redis restart or failover lost. Lateness never counts time when no
healthy pod could reach the timer (`reach.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.checker.bounds import Bound
from harness.checker.findings import Findings, Violation
from harness.checker.model import Instance, Model, Row
from harness.checker.reach import Reach
from harness.checker.spans import EPSILON

PENDING = "pending"
"""`why_not_fired`'s answer for a timer that nothing excuses from firing."""


@dataclass(frozen=True)
class Liveness:
    """The liveness findings, and per fired timer how late it was (for stats and reports)."""

    findings: Findings
    fires: tuple[dict[str, Any], ...]
    """One row per logical timer that fired: who fired it, its deadline, how late."""
    lateness: tuple[float, ...]


def check_liveness(model: Model, reach: Reach, bound: Bound) -> Liveness:
    """Judge every logical timer: fired in time, or legitimately unfired."""
    first_fires = _first_fires(model)
    timers: dict[str, list[Instance]] = defaultdict(list)
    for instance in model.instances.values():
        timers[model.timer(instance.id)].append(instance)
    violations: list[Violation] = []
    declared: list[str] = []
    fires: list[dict[str, Any]] = []
    for timer, members in timers.items():
        head = model.instances[timer]
        deadline = model.deadline(head)
        if deadline is None:
            continue
        if timer in first_fires:
            if not any(member.id in model.resurrections for member in members):
                fire = _fire_row(model, reach, head, members, deadline, first_fires[timer])
                fires.append(fire)
                late = _late(head, fire, bound)
                violations += [late] if late else []
            continue
        reason = why_not_fired(model, reach, bound, members)
        if reason is None:
            continue
        if reason != PENDING:
            declared.append(reason)
            continue
        excused = reach.excused(members, deadline, model.end)
        if deadline + bound.value + excused < model.end:
            violations.append(
                Violation(
                    "lost",
                    f"{head.sender}: {', '.join(m.id for m in members)} due at {deadline:.3f} "
                    f"never fired (bound {bound.value:.3f} s, excused {excused:.3f} s)",
                    tuple(m.row for m in members),
                )
            )
    return Liveness(
        Findings(tuple(violations), tuple(declared)),
        tuple(fires),
        tuple(fire["lateness"] for fire in fires),
    )


def _first_fires(model: Model) -> dict[str, Row]:
    """Per logical timer, the first start of any of its fire ids that fired successfully."""
    first: dict[str, Row] = {}
    for fire_id in model.fires_ok:
        if fire_id not in model.instances:
            continue
        timer = model.timer(fire_id)
        start = min(
            (
                r
                for r in model.by_fire.get(fire_id, ())
                if r["kind"] == "fire" and r["outcome"] == "fire_start"
            ),
            key=lambda r: r["t"],
        )
        if timer not in first or start["t"] < first[timer]["t"]:
            first[timer] = start
    return first


def why_not_fired(model: Model, reach: Reach, bound: Bound, members: list[Instance]) -> str | None:
    """None if the timer ended legitimately, a declared-loss class, or `PENDING`."""
    ids = {m.id for m in members}
    for member in members:
        if member.declared:
            return None
        if member.id in model.fallback_lost:
            return "fallback_lost_on_crash"
    for member in members:
        for write in model.writes.get(member.sender, ()):
            if write.order != member.order() or write.instance in ids:
                continue
            if model.newer(write, member, member.version):
                return None  # superseded (or cancelled) by a later write
        if member.origin == "fallback" and _merge_skipped(model, member):
            return None
        if any(t >= member.written for t in model.unacked_cancels.get(member.sender, ())):
            return None  # a cancel that timed out may have landed: either outcome is fine
    for member in members:
        if member.claims:
            claim = model.rows[member.claims[-1]]
            if model.delivery.get(claim["pod"]) == "at_most_once" and model.crashed_after(claim):
                return "crash_between_claim_and_fire"
        if member.origin == "custom" and _delete_in_flight_at_crash(model, reach, bound, member):
            return "crash_between_claim_and_fire"
        lost = member.origin in model.in_redis and model.restart_loses(
            member.written, member.version, member.sender
        )
        if lost:
            return f"{lost.cause}_lost_write"
    return PENDING


def _delete_in_flight_at_crash(model: Model, reach: Reach, bound: Bound, member: Instance) -> bool:
    """An at-most-once pod died while it may have been deleting this due timer: its delete
    may have landed without the claim ever being reported.

    A pod deletes a timer once its own clock shows it due, so from D − S on. It can only
    still be deleting it on time up to D plus the lateness bound plus the time the timer was
    out of every healthy pod's reach: a crash after that came when the timer was already
    overdue, and its loss is judged as `lost`, not excused.
    """
    deadline = model.deadline(member)
    if deadline is None:
        return False
    for pod, crashes in model.crashes.items():
        if model.delivery.get(pod) != "at_most_once":
            continue
        for crash in crashes:
            on_time = deadline + bound.value + reach.excused([member], deadline, crash)
            if deadline - model.info.max_skew <= crash <= on_time:
                return True
    return False


def _merge_skipped(model: Model, member: Instance) -> bool:
    """Whether the merge of `member`'s pod skipped its sender's outage state after it was
    written (Redis held something newer)."""
    return any(
        row["kind"] == "reconciled"
        and row["sender_id"] == member.sender
        and row["pod"] == member.pod
        and row["t"] >= member.done
        and not row["d"].get("applied")
        for row in model.rows
    )


def _fire_row(
    model: Model,
    reach: Reach,
    head: Instance,
    members: list[Instance],
    deadline: float,
    fire: Row,
) -> dict[str, Any]:
    """How late the timer fired, judged by the copy that fired: out of reach only while its
    store was."""
    fired = float(fire["t"])
    return {
        "sender_id": head.sender,
        "fire_id": fire["fire_id"],
        "pod": fire["pod"],
        "origin": fire["origin"],
        "deadline": deadline,
        "fired": fired,
        "lateness": fired - deadline,
        "excused": reach.excused(members, deadline, fired, fire["origin"] or "redis"),
        "row": fire["seq"],
    }


def _late(head: Instance, fire: dict[str, Any], bound: Bound) -> Violation | None:
    if fire["lateness"] - fire["excused"] <= bound.value + EPSILON:
        return None
    return Violation(
        "late",
        f"{head.sender}: fired {fire['lateness']:.3f} s after its deadline "
        f"({fire['excused']:.3f} s excused; bound {bound.value:.3f} s)",
        (head.row,),
    )
