"""The fallback: every fault left a trace; every stretch without Redis activated each affected
pod's fallback once, in time, and merged it back in time once Redis returned.

Rules: `not_exercised`, `fallback_activation`, `fallback_flapping`, `fallback_deactivation`,
`spurious_fallback`. Pods whose store has no fallback (a five-method store) are judged by
`not_exercised` only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from harness.checker.bounds import Bound, Bounds
from harness.checker.findings import Findings, Violation
from harness.checker.model import REACH_FAULTS, Model, Window
from harness.checker.spans import EPSILON, union_rows

CRASH_FAULTS = frozenset({"pod_crash", "crash_mid_claim"})
"""Faults that kill one pod."""

JITTERED_POLLS = 2
"""Poll intervals within which a running pod is sure to poll once: a sleep lasts at most
P(1+j), and the jitter j is at most 1 (`store.options`)."""


@dataclass(frozen=True)
class FaultTraces:
    """The fallback findings, and per fault what it left in the history (its evidence)."""

    findings: Findings
    exercised: dict[str, str]


def check_fallback(model: Model, bounds: Bounds) -> FaultTraces:
    """Judge each fault's trace and each pod's stretches without Redis."""
    exercised: dict[str, str] = {}
    violations: list[Violation] = []
    pods = sorted(set(model.starts))
    cut_off: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for window in model.windows:
        affected = _affected(window, pods)
        evidence = _exercised(model, window, affected)
        exercised[f"{window.kind}@{window.start:.1f}s"] = evidence
        if evidence.startswith("NOT"):
            violations.append(
                Violation(
                    "not_exercised",
                    f"{window.kind} at {window.start:.1f}s: {evidence}",
                    (window.row,),
                )
            )
        if window.kind == "slow_redis":
            # Only the part where replies come after the socket timeout cuts pods off.
            for start, end in model.timeout_spans():
                if start < window.end and window.start < end:
                    for pod in affected:
                        cut_off[pod].append(
                            (max(start, window.start), min(end, window.end), window.row)
                        )
        elif model.cuts_off(window):
            for pod in affected:
                cut_off[pod].append((window.start, window.end, window.row))
    for pod in pods:
        if pod in model.without_fallback:
            continue
        violations += _pod(model, pod, cut_off.get(pod, []), bounds)
    return FaultTraces(Findings(tuple(violations)), exercised)


def _pod(
    model: Model, pod: str, cut_off: list[tuple[float, float, int]], bounds: Bounds
) -> list[Violation]:
    """One pod's stretches without Redis, and any activation outside them."""
    straggle = model.straggle
    found: list[Violation] = []
    stretches = union_rows(cut_off)
    for index, (start, end, row) in enumerate(stretches):
        after = stretches[index + 1][0] if index + 1 < len(stretches) else math.inf
        found += _stretch(model, pod, (start, end, row), after, bounds)
    for t, seq in model.activations.get(pod, ()):
        if not any(s - EPSILON <= t <= e + straggle for s, e, _ in stretches):
            found.append(
                Violation(
                    "spurious_fallback",
                    f"{pod}: fallback activated at {t:.3f} with no fault",
                    (seq,),
                )
            )
    return found


def _stretch(
    model: Model,
    pod: str,
    stretch: tuple[float, float, int],
    next_start: float,
    bounds: Bounds,
) -> list[Violation]:
    """One stretch of time when `pod` could not reach Redis: activate in time, once, and
    merge back in time (unless Redis is lost again before the bound)."""
    start, end, row = stretch
    activation, deactivation = bounds.activation, bounds.deactivation
    found: list[Violation] = []
    activations = [
        (t, seq)
        for t, seq in model.activations.get(pod, ())
        if start - EPSILON <= t <= end + model.straggle
    ]
    if end - start >= activation.value and model.alive_through(
        pod, start, start + activation.value
    ):
        timely = any(t <= start + activation.value for t, _ in activations)
        if not timely and not model.active_at(pod, start):
            found.append(
                Violation(
                    "fallback_activation",
                    f"{pod}: no fallback within {activation.value:.3f} s of losing Redis "
                    f"at {start:.3f}",
                    (row,),
                )
            )
    found += _flapping(model, pod, start, end, activations)
    if not activations and not model.active_at(pod, start):
        return found
    last_on = max((t for t, _ in activations), default=start)
    if model.crashed_between(pod, last_on, end):
        # The crash took the fallback with it; the pod's next incarnation starts on Redis
        # and owes a merge only if it activated a fallback of its own (then `last_on` is
        # that activation, after the crash). Swarm seed 1035: a pod crashed in a pause.
        return found
    late = _merge_late(model, pod, end, last_on, next_start, deactivation)
    if late:
        found.append(Violation("fallback_deactivation", late, (row,)))
    return found


def _flapping(
    model: Model, pod: str, start: float, end: float, activations: list[tuple[float, int]]
) -> list[Violation]:
    """A deactivation while Redis was still out of reach, followed by a new activation."""
    found = []
    for t, seq in model.deactivations.get(pod, ()):
        if not start + model.straggle < t < end - EPSILON:
            continue
        again = [a for a in activations if a[0] > t]
        if again and not model.crashed_between(pod, t, again[0][0]):
            found.append(
                Violation(
                    "fallback_flapping",
                    f"{pod}: fallback deactivated at {t:.3f} and activated again at "
                    f"{again[0][0]:.3f} while Redis was still out of reach",
                    (seq, again[0][1]),
                )
            )
    return found


def _merge_late(
    model: Model, pod: str, end: float, last_on: float, next_start: float, bound: Bound
) -> str | None:
    """Why the pod's merge after Redis came back at `end` was late, or None."""
    # A call sent before Redis came back may time out after it, and activate then: the
    # probes that end the outage start from that activation (swarm seed 2538).
    back = max(end, last_on)
    limit = back + bound.value
    merged = any(end - EPSILON <= t <= limit for t, _ in model.deactivations.get(pod, ()))
    due = limit < min(model.end, next_start) and model.alive_through(pod, end, limit)
    if not due or merged:
        return None
    return (
        f"{pod}: fallback still active {bound.value:.3f} s after Redis came back at {end:.3f}"
        + (f" (activated late, at {last_on:.3f})" if last_on > end else "")
    )


def _affected(window: Window, pods: list[str]) -> list[str]:
    if window.kind in {"partial_outage", *CRASH_FAULTS}:
        return [window.target] if window.target else []
    if window.kind in REACH_FAULTS or window.kind == "slow_redis":
        return pods
    return []


def _exercised(model: Model, window: Window, affected: list[str]) -> str:
    """What the fault left in the history; "NOT exercised: ..." if nothing shows it."""
    if window.kind in CRASH_FAULTS:
        return _crash_trace(model, window)
    if not model.cuts_off(window):
        return "applied"
    if set(affected) <= model.without_fallback:
        failed = sum(
            1
            for pod in affected
            for t in model.failed_calls.get(pod, ())
            if window.start <= t <= window.end
        )
        return f"store unreachable, {failed} message(s) failed (no fallback configured)"
    hits = sum(
        1
        for pod in affected
        for t, _ in model.activations.get(pod, ())
        if window.start - EPSILON <= t <= window.end
    ) + sum(1 for pod in affected if model.active_at(pod, window.start))
    if hits:
        back = sum(
            1
            for pod in affected
            if any(t >= window.start for t, _ in model.deactivations.get(pod, ()))
        )
        return f"fallback activated on {hits} pod(s), deactivated on {back}"
    # A pod can only notice the fault while it runs: one that was down for all but a moment
    # of it had no call to fail (swarm seed 2349: a pod cut off while crashed).
    up = max((model.longest_up(pod, window.start, window.end) for pod in affected), default=0.0)
    if up < noticing_time(model):
        return "too short to activate the fallback while an affected pod was up"
    return "NOT exercised: no pod activated its fallback"


def noticing_time(model: Model) -> float:
    """How long a pod must run during a fault to be sure to notice it: its next poll comes
    within `JITTERED_POLLS` poll intervals, and that call fails after a socket timeout."""
    return model.info.socket_timeout + model.info.service.poll_interval * JITTERED_POLLS


def _crash_trace(model: Model, window: Window) -> str:
    target = window.target or ""
    crashed = any(
        window.start - EPSILON <= t <= window.end + EPSILON for t in model.crashes.get(target, ())
    )
    if not crashed and not model.alive_through(target, window.start, window.start):
        return "the pod was already down"
    return "pod crashed and restarted" if crashed else "NOT exercised: the pod never crashed"
