"""What a verdict shows besides rules: stale fires, and the spans a report draws."""

from __future__ import annotations

from typing import Any

from harness.checker.model import Model, started_at


def stale_fires(model: Model) -> int:
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
            (started_at(row), 0, row) if row["kind"] == "claim" else (float(row["t"]), 1, row)
            for row in model.rows
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


def timeline(model: Model) -> list[dict[str, Any]]:
    """Fault windows, fallback stretches and pod downtime, as spans for a report."""
    spans = [
        {"lane": "faults", "what": w.kind if not w.target else f"{w.kind} {w.target}",
         "kind": w.kind, "start": w.start, "end": w.end}
        for w in model.windows
    ]  # fmt: skip
    for pod in sorted(set(model.starts) | set(model.activations)):
        for start, end in model.pod_down(pod):
            spans.append(
                {"lane": pod, "what": "down", "kind": "down", "start": start,
                 "end": min(end, model.end)}
            )  # fmt: skip
        offs = sorted(t for t, _ in model.deactivations.get(pod, ()))
        crashes = sorted(model.crashes.get(pod, ()))
        for start, _ in model.activations.get(pod, ()):
            ends = [t for t in (*offs, *crashes) if t >= start]
            spans.append(
                {"lane": pod, "what": "fallback", "kind": "fallback", "start": start,
                 "end": min(ends) if ends else model.end}
            )  # fmt: skip
    return spans
