"""Claims and fires: each timer claimed while current, fired once, never early, with what it
was armed with.

Rules: `unknown_instance`, `superseded`, `payload`, `duplicate`, `unexplained_refire`,
`early`. Declared: resurrections by a Redis restart, `skip_older_than` skips, callbacks given
up.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from harness.checker.findings import Findings, Violation, combine
from harness.checker.model import Model, Row, started_at
from harness.checker.spans import EPSILON


def check_claims(model: Model) -> Findings:
    """Every claims-and-fires rule, in the order their evidence appears in the history."""
    return combine(
        _claims_and_payloads(model),
        _resurrections(model),
        _duplicates(model),
        _refires(model),
        _early(model),
    )


def _claims_and_payloads(model: Model) -> Findings:
    unknown = {row["seq"] for row in model.unknown_claims}
    seen: set[str] = set()
    found: list[Violation] = []
    for row in model.rows:
        if row["kind"] == "claim" and row["seq"] in unknown:
            found.append(
                Violation(
                    "unknown_instance",
                    f"{row['sender_id']}: claimed {row['fire_id']}, which no write explains",
                    (row["seq"],),
                )
            )
        elif row["kind"] == "claim" and not (row["attempt"] and int(row["attempt"]) > 1):
            found += _superseded(model, row)
        elif row["kind"] == "fire" and row["outcome"] == "fire_start":
            if row["fire_id"] not in seen:
                found += _payload(model, row)
            seen.add(row["fire_id"])
    return Findings(tuple(found), tuple(reason for _, reason in model.policy_outcomes))


def _superseded(model: Model, claim: Row) -> list[Violation]:
    """A claim that began after a newer write of its sender had completed, unless a Redis
    restart lost that write (the claim took a resurrected timer: declared)."""
    for write, lost in model.superseding(claim):
        if lost is not None:
            continue
        instance = model.instances[claim["fire_id"]]
        began = started_at(claim)
        return [
            Violation(
                "superseded",
                f"{instance.sender}: claimed {instance.id} at {began:.3f} after a "
                f"newer write (row {write.row}) completed at {write.done:.3f}",
                (instance.row, write.row, claim["seq"]),
            )
        ]
    return []


def _resurrections(model: Model) -> Findings:
    return Findings(declared=tuple(f"{r.cause}_resurrection" for r in model.resurrections.values()))


def _payload(model: Model, fire: Row) -> list[Violation]:
    """A fire carries exactly what its instance was armed with: the session id (what tells
    the receiver whether the session it ends is still the current one), the scheduled
    time, and the metadata (compared by digest)."""
    instance = model.instances.get(fire["fire_id"])
    if instance is None or instance.payload is None:
        return []
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
    if not problems:
        return []
    return [
        Violation(
            "payload",
            f"{instance.sender}: {fire['fire_id']} fired with " + "; ".join(problems),
            (instance.row, fire["seq"]),
        )
    ]


def _duplicates(model: Model) -> Findings:
    """One logical timer fired successfully under two fire ids."""
    by_timer: dict[str, list[str]] = defaultdict(list)
    for fire_id in model.fires_ok:
        if fire_id in model.instances:
            by_timer[model.timer(fire_id)].append(fire_id)
    return Findings(
        tuple(
            Violation(
                "duplicate",
                f"{model.instances[timer].sender}: one timer fired as {', '.join(fire_ids)}",
                tuple(model.fires_ok[f][0]["seq"] for f in fire_ids),
            )
            for timer, fire_ids in by_timer.items()
            if len(fire_ids) > 1
        )
    )


def _refires(model: Model) -> Findings:
    """Each fire id that fired again: explained, or a violation."""
    violations: list[Violation] = []
    declared: list[str] = []
    for fire_id, attempts in model.fire_starts.items():
        for previous, current in itertools.pairwise(attempts):
            if current["origin"] == "custom":
                cause = _restart_between(model, previous["t"], current["t"])
                if cause is not None:
                    declared.append(f"{cause}_resurrection")
                else:
                    violations.append(_claimed_twice(fire_id, previous, current))
                continue
            explained, cause = _refire_explained(model, fire_id, previous, current)
            if cause is not None:
                declared.append(f"{cause}_resurrection")
            if not explained:
                violations.append(
                    Violation(
                        "unexplained_refire",
                        f"{previous['sender_id']}: {fire_id} fired again by {current['pod']} "
                        f"with nothing to explain it",
                        (previous["seq"], current["seq"]),
                    )
                )
    return Findings(tuple(violations), tuple(declared))


def _restart_between(model: Model, t0: float, t1: float) -> str | None:
    """The cause of the first Redis restart or failover between two fires, if any."""
    for restart in model.restarts:
        if t0 <= restart.t <= t1 + EPSILON:
            return restart.cause
    return None


def _claimed_twice(fire_id: str, previous: Row, current: Row) -> Violation:
    """A five-method store's timer fired twice: its conditional delete succeeded twice.

    Such a store holds no leases, so nothing re-fires a claim: the only excuse is a Redis
    restart in between that brought the deleted timer back (a declared resurrection).
    """
    return Violation(
        "duplicate",
        f"{previous['sender_id']}: {fire_id} fired by {previous['pod']} and again by "
        f"{current['pod']}: two conditional deletes of one timer both succeeded, or a "
        "retried write armed it again after it fired",
        (previous["seq"], current["seq"]),
    )


def _refire_explained(
    model: Model, fire_id: str, previous: Row, current: Row
) -> tuple[bool, str | None]:
    """Whether something explains a fire id firing again, and the restart cause if a Redis
    restart did (a declared resurrection)."""
    pod, t0, t1 = previous["pod"], previous["t"], current["t"]
    lease = model.info.service.lease_seconds
    if model.unacked.get((previous["sender_id"], previous["scheduled_time"])):
        return True, None  # a write that timed out landed after all, while its copy fired too
    done = [
        r
        for r in model.by_fire.get(fire_id, ())
        if r["kind"] == "fire" and r["outcome"] == "fire_done" and r["pod"] == pod and r["t"] >= t0
    ]
    if not done or done[0]["result"] != "ok":
        return True, None  # the previous attempt failed or never finished
    if any(t0 <= crash <= t1 for crash in model.crashes.get(pod, ())):
        return True, None
    if any(t0 - lease <= t <= t1 for t, _ in model.activations.get(pod, ())):
        return True, None  # its lease could not be released during an outage
    cause = _restart_between(model, t0, t1)
    if cause is not None:
        return True, cause
    return done[0]["t"] - t0 >= lease, None  # a fire slower than its lease


def _early(model: Model) -> Findings:
    """A fire before its deadline less the largest clock offset between pods."""
    tolerance = model.info.max_skew + EPSILON
    found = []
    for fire_id, attempts in model.fire_starts.items():
        instance = model.instances.get(fire_id)
        deadline = None if instance is None else model.deadline(instance)
        if instance is None or deadline is None:
            continue
        first = attempts[0]
        if first["t"] < deadline - tolerance:
            found.append(
                Violation(
                    "early",
                    f"{instance.sender}: fired {deadline - first['t']:.3f} s before its "
                    f"deadline (tolerance {model.info.max_skew:.3f} s)",
                    (instance.row, first["seq"]),
                )
            )
    return Findings(tuple(found))
