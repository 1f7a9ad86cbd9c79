"""The checker's account of a failover: asynchronous replication may lose the writes the old
master acknowledged just before it died, and those are declared, never hidden or excused
beyond the window the fault records."""

from __future__ import annotations

import io
from typing import Any

from harness.checker import Verdict, check, load_rows
from record.history import HistoryWriter
from record.runinfo import RunInfo
from store.options import ServiceSettings

FAILOVER_AT = 100.0
TIMEOUT = 20.0


def _judge(write_done: float, fired: bool, replication_window: float = 1.0) -> Verdict:
    """One pod, one timer written at `write_done`, a failover at FAILOVER_AT."""
    stream = io.StringIO()
    history = HistoryWriter(stream)

    def at(t: float, kind: str, pod: str = "", **fields: Any) -> None:
        history.record(t, t if pod else None, pod, kind, **fields)

    at(0.0, "run_start")
    at(0.0, "pod_start", "pod-1", delivery="at_least_once", fallback=True)
    at(
        write_done,
        "schedule",
        "pod-1",
        sender_id="user-1",
        session_id="s",
        scheduled_time=write_done + TIMEOUT,
        version=7,
        instance="abc",
        origin="redis",
        elapsed=0.001,
        timeout=TIMEOUT,
    )
    at(
        FAILOVER_AT,
        "fault_start",
        fault="redis_outage",
        mode="failover",
        fault_index=0,
        replication_window=replication_window,
    )
    at(FAILOVER_AT + 2.0, "fault_end", fault="redis_outage", fault_index=0)
    if fired:
        due = write_done + TIMEOUT + 0.5
        claim = {"sender_id": "user-1", "scheduled_time": write_done + TIMEOUT, "origin": "redis"}
        at(due, "claim", "pod-1", **claim, version=7, instance="abc", fire_id="abc", attempt=1)
        for outcome in ("fire_start", "fire_done"):
            at(due, "fire", "pod-1", **claim, instance="abc", fire_id="abc", outcome=outcome,
               result="ok" if outcome == "fire_done" else "", attempt=1)  # fmt: skip
    at(400.0, "run_end")
    stream.seek(0)
    info = RunInfo(kind="load", service=ServiceSettings(lease_seconds=5.0), end=400.0)
    return check(load_rows(stream), info)


def test_a_write_acknowledged_just_before_the_kill_is_a_declared_failover_loss() -> None:
    verdict = _judge(write_done=FAILOVER_AT - 0.4, fired=False)
    assert [v.rule for v in verdict.violations if v.rule == "lost"] == []
    assert verdict.declared["failover_lost_write"] == 1


def test_a_write_older_than_the_replication_window_must_fire() -> None:
    verdict = _judge(write_done=FAILOVER_AT - 5.0, fired=False)
    assert [v.rule for v in verdict.violations if v.rule == "lost"] == ["lost"]
    assert verdict.declared["failover_lost_write"] == 0


def test_a_fault_that_declares_no_window_excuses_nothing() -> None:
    verdict = _judge(write_done=FAILOVER_AT - 0.4, fired=False, replication_window=0.0)
    assert [v.rule for v in verdict.violations if v.rule == "lost"] == ["lost"]


def test_a_write_that_survived_the_failover_and_fired_is_not_counted() -> None:
    verdict = _judge(write_done=FAILOVER_AT - 0.4, fired=True)
    assert verdict.declared["failover_lost_write"] == 0
    assert verdict.stats["fires"] == 1
