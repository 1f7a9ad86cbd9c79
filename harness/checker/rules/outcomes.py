"""What users saw fail: the store's errors, failed writes, stalled event loops, and runs that
prove nothing.

Rules: `store_error`, `write_failed`, `loop_stall`, `vacuous`. Declared: writes that failed
while their pod could not reach the store (`write_failed_outage`) or died mid-call
(`write_failed_crash`).
"""

from __future__ import annotations

from harness.checker.findings import Findings, Violation
from harness.checker.model import Model
from harness.checker.spans import EPSILON


def check_store_errors(model: Model) -> Findings:
    """Calls for which the store broke its contract, as the pods recorded them."""
    return Findings(
        tuple(
            Violation(
                "store_error",
                f"{row['pod']}: {row['d'].get('op')} raised {row['d'].get('error')}: "
                f"{row['d'].get('message', '')}",
                (row["seq"],),
            )
            for row in model.store_errors
        )
    )


def check_failed_writes(model: Model) -> Findings:
    """Every write a user saw fail, judged: explained by a fault that cut its pod off or
    killed it mid-call (declared by class), or a violation. A store that raised something
    other than a connectivity error broke its contract."""
    violations: list[Violation] = []
    declared: list[str] = []
    for row, began in model.failed_writes:
        pod, t = row["pod"], row["t"]
        causes = [c for c in model.call_failures.get((pod, row["sender_id"]), ()) if c["t"] <= t]
        cause = causes[-1] if causes else None
        if cause is not None and not cause["d"].get("unavailable", True):
            violations.append(
                Violation(
                    "store_error",
                    f"{pod}: {cause['d'].get('op')} for {row['sender_id']} raised "
                    f"{cause['d'].get('error')}: {cause['d'].get('message', '')}",
                    (cause["seq"], row["seq"]),
                )
            )
            continue
        if pod is None or any(
            began - EPSILON <= crash <= t + EPSILON for crash in model.crashes.get(pod, ())
        ):
            declared.append("write_failed_crash")
            continue
        # A pod in its fallback (until it merges back, after the fault) may refuse writes
        # so a degraded-aware balancer retries them on a peer (`refusing_fallback`).
        if model.active_at(pod, t) or any(
            s - EPSILON <= t <= e + model.straggle for s, e in model.cut_spans(pod)
        ):
            declared.append("write_failed_outage")
            continue
        error = "no reply" if cause is None else cause["d"].get("error")
        violations.append(
            Violation(
                "write_failed",
                f"{pod}: a write for {row['sender_id']} failed at {t:.3f} ({error}) with no "
                "fault to explain it: that conversation is left without its timer",
                (row["seq"],) if cause is None else (cause["seq"], row["seq"]),
            )
        )
    return Findings(tuple(violations), tuple(declared))


def loop_lags(model: Model) -> list[float]:
    """Every pod's worst event-loop lag per window (real processes record them)."""
    return [float(row["d"].get("lag", 0.0)) for row in model.rows if row["kind"] == "loop_lag"]


def check_loop_stalls(model: Model) -> Findings:
    """A lag over the run's bound: every request and timer of that pod waited."""
    bound = model.info.loop_stall_bound
    return Findings(
        tuple(
            Violation(
                "loop_stall",
                f"{row['pod']}: its event loop stalled {lag:.2f} s (bound {bound:g} s): every "
                "request and timer of that pod waited",
                (row["seq"],),
            )
            for row in model.rows
            if row["kind"] == "loop_lag" and (lag := float(row["d"].get("lag", 0.0))) > bound
        )
    )


def check_vacuous(model: Model, fires: int) -> Findings:
    """A run in which nothing was armed, or nothing fired, proves nothing."""
    if not model.instances:
        return Findings(
            (Violation("vacuous", "no timer was ever armed: the run proves nothing", ()),)
        )
    if not fires:
        return Findings(
            (
                Violation(
                    "vacuous",
                    f"{len(model.instances)} timers armed and none ever fired: the run proves "
                    "nothing",
                    (),
                ),
            )
        )
    return Findings()
