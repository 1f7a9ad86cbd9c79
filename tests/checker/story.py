"""Hand-written histories for checker tests: a few rows that tell one story, then a verdict.

Times are true times in seconds; each pod's clock is true time (no skew unless a test says
so). `arm` and `fire` write the rows a pod writes for a store call, so a test only states
what is particular to its story.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from harness.checker import Verdict, check, load_rows
from record.history import HistoryWriter
from record.runinfo import RunInfo
from store.options import ServiceSettings

SETTINGS = ServiceSettings(lease_seconds=5.0, fire_timeout=2.0)
"""Short leases, so that lease-related excuses stay small next to the run."""


class Story:
    """One history being written."""

    def __init__(
        self,
        pods: tuple[str, ...] = ("pod-0",),
        *,
        delivery: str = "at_least_once",
        fallback: bool = True,
        steady: bool = True,
    ) -> None:
        """`steady`: one timer armed at 0.5 s and fired on time at 1.6 s by the first pod, so
        that the run is not vacuous and only the story's own rows can break a rule."""
        self._rows: list[tuple[float, str, str, dict[str, Any]]] = []
        self._faults = 0
        self.at(0.0, "run_start")
        for pod in pods:
            self.at(0.0, "pod_start", pod, delivery=delivery, fallback=fallback)
        if steady:
            self.fire(1.6, pods[0], self.arm(0.5, pods[0], "user-0", 1.0, "steady"), "steady")

    def at(self, t: float, kind: str, pod: str = "", **fields: Any) -> None:
        """One row at true time `t` (rows are written in time order, ties in call order)."""
        self._rows.append((t, kind, pod, fields))

    def arm(
        self,
        t: float,
        pod: str,
        sender: str,
        timeout: float,
        instance: str,
        *,
        version: int = 1,
        origin: str = "redis",
        session: str = "s",
    ) -> dict[str, Any]:
        """A message at `t` arming a timer for `timeout` s; returns the timer's fields."""
        timer = {"sender_id": sender, "session_id": session, "scheduled_time": t + timeout}
        self.at(t, "message", pod, **timer, timeout=timeout)
        self.at(t, "schedule", pod, **timer, version=version, instance=instance, origin=origin,
                elapsed=0.001, timeout=timeout)  # fmt: skip
        return timer

    def fail_write(self, t: float, pod: str, sender: str, *, unavailable: bool = True) -> None:
        """A message at `t` whose write failed: a connectivity error, or (`unavailable`
        False) any other exception, which breaks the store's contract."""
        self.at(t, "message", pod, sender_id=sender, session_id="s", scheduled_time=t + 5.0,
                timeout=5.0)  # fmt: skip
        error = "ConnectionError" if unavailable else "TypeError"
        self.at(t, "call_failed", pod, sender_id=sender, op="schedule", error=error,
                message="boom", unavailable=unavailable, elapsed=0.001)  # fmt: skip
        self.at(t, "message", pod, sender_id=sender, result="error", error=error)

    def outage(
        self,
        start: float,
        end: float,
        pod: str | None = "pod-0",
        kind: str = "redis_outage",
        **detail: Any,
    ) -> None:
        """A fault window from `start` to `end`; `pod`: the pod whose fallback activates half
        a second in and merges back a second after the end (None: no fallback activity)."""
        index = self._faults
        self._faults += 1
        self.at(start, "fault_start", fault=kind, fault_index=index, **detail)
        if pod is not None:
            self.at(start + 0.5, "fallback_activated", pod, outage=1, reason="unreachable")
        self.at(end, "fault_end", fault=kind, fault_index=index)
        if pod is not None:
            self.at(end + 1.0, "fallback_deactivated", pod, applied=0, skipped=0, unverified=0)

    def claim(
        self, t: float, pod: str, timer: dict[str, Any], fire_id: str, **fields: Any
    ) -> dict[str, Any]:
        """A claim of `fire_id` at `t`; returns the fields its fire rows share."""
        version = fields.pop("version", 1)
        claim = {**timer, "origin": "redis", "instance": fire_id, "fire_id": fire_id,
                 "attempt": 1, **fields}  # fmt: skip
        self.at(t, "claim", pod, **claim, version=version, elapsed=0.001)
        return claim

    def fire(self, t: float, pod: str, timer: dict[str, Any], fire_id: str, **fields: Any) -> None:
        """A claim of `fire_id` at `t`, its fire started and done with success."""
        claim = self.claim(t, pod, timer, fire_id, **fields)
        self.at(t, "fire", pod, **claim, outcome="fire_start")
        self.at(t, "fire", pod, **claim, outcome="fire_done", result="ok")

    def judge(self, end: float, **info: Any) -> Verdict:
        """The checker's verdict on the story so far, for a run that ended at `end`."""
        self.at(end, "run_end")
        stream = io.StringIO()
        history = HistoryWriter(stream)
        for t, kind, pod, fields in sorted(self._rows, key=lambda row: row[0]):
            history.record(t, t if pod else None, pod, kind, **fields)
        stream.seek(0)
        base = RunInfo(kind="sim", service=SETTINGS, end=end)
        return check(load_rows(stream), replace(base, **info))


def rules(verdict: Verdict) -> list[str]:
    """The rules a verdict broke, in the order found."""
    return [violation.rule for violation in verdict.violations]


def bound(verdict: Verdict, name: str = "lateness bound") -> float:
    return next(b.value for b in verdict.bounds if b.name == name)
