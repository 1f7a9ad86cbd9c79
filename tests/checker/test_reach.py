"""The checker's account of when a due Redis timer is within reach of a healthy pod.

A pod back from its own partial outage claims nothing until it has merged back, and then holds
back timers that came due during the outage for two probe intervals (it cannot tell a partial
outage from a full one). When that pod is the only one up, a timer due in that span is excused
until the hold-back ends, and no longer (swarm seed 164 found the gap).
"""

from __future__ import annotations

import io
from typing import Any

from harness.checker import Verdict, check, load_rows
from record.history import HistoryWriter
from record.runinfo import RunInfo
from store.options import ServiceSettings

DEADLINE = 32.2
MERGED = 33.0  # pod-2 back from its partial outage; it holds back until MERGED + 2 probes
CUT_END = 32.215


def _judge(fired_at: float) -> Verdict:
    """Three pods: pod-0 cut off throughout, pod-1 crashed, pod-2 cut off until CUT_END."""
    stream = io.StringIO()
    history = HistoryWriter(stream)

    def at(t: float, kind: str, pod: str = "", **fields: Any) -> None:
        history.record(t, t if pod else None, pod, kind, **fields)

    at(0.0, "run_start")
    for pod in ("pod-0", "pod-1", "pod-2"):
        at(0.0, "pod_start", pod, delivery="at_least_once", fallback=True)
    timer = {"sender_id": "user-1", "session_id": "s", "scheduled_time": DEADLINE}
    at(26.0, "schedule", "pod-0", **timer, version=3, instance="abc", origin="redis",
       elapsed=0.001, timeout=DEADLINE - 26.0)  # fmt: skip
    at(28.0, "fault_start", fault="partial_outage", fault_index=0, target="pod-2")
    at(28.5, "fallback_activated", "pod-2", outage=1, reason="cut off")
    at(29.0, "fault_start", fault="partial_outage", fault_index=1, target="pod-0")
    at(29.5, "fallback_activated", "pod-0", outage=1, reason="cut off")
    at(32.0, "pod_crash", "pod-1", fallback_lost=[], reason="crash")
    at(CUT_END, "fault_end", fault="partial_outage", fault_index=0)
    at(MERGED, "fallback_deactivated", "pod-2", applied=0, skipped=0, unverified=0)
    at(fired_at, "pod_start", "pod-1", delivery="at_least_once", fallback=True)
    claim = {**timer, "origin": "redis", "instance": "abc", "fire_id": "abc", "attempt": 1}
    at(fired_at, "claim", "pod-1", **claim, version=3)
    at(fired_at, "fire", "pod-1", **claim, outcome="fire_start")
    at(fired_at, "fire", "pod-1", **claim, outcome="fire_done", result="ok")
    at(60.0, "fault_end", fault="partial_outage", fault_index=1)
    at(61.0, "fallback_deactivated", "pod-0", applied=0, skipped=0, unverified=0)
    at(120.0, "run_end")
    stream.seek(0)
    info = RunInfo(kind="sim", service=ServiceSettings(lease_seconds=5.0), end=120.0)
    return check(load_rows(stream), info)


def _late(verdict: Verdict) -> list[str]:
    return [v.rule for v in verdict.violations if v.rule in {"late", "lost"}]


def test_a_timer_held_back_by_the_only_pod_up_is_excused_until_its_hold_back_ends() -> None:
    assert _late(_judge(fired_at=35.76)) == []


def test_a_timer_fired_beyond_the_hold_back_and_the_bound_is_late() -> None:
    excused = _judge(fired_at=35.76)
    bound = next(b.value for b in excused.bounds if b.name == "lateness bound")
    verdict = _judge(fired_at=MERGED + 2.0 + bound + 0.5)
    assert _late(verdict) == ["late"]
