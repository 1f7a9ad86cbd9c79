"""The simulator's prediction beside a real load run, at the same configuration.

The configuration is read off the load run's own history, not its command line: how many
conversations there were, how many messages each sent and how far apart (the range of the gaps
between a conversation's messages: Locust users wait uniformly), their session timeout, the
pods and the poll interval. The simulated pods' polls are out of phase, as separately started
processes' are. The simulator then runs that workload (no faults) and
the two verdicts are compared on what capacity planning uses: fire lateness and fire rate.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import pandas as pd

from harness.checker import check_run
from harness.simrun import run_and_check
from record.faults import FaultPlan
from record.history import details, read_history
from record.runinfo import RunInfo
from sim.spec import RunSpec
from sim.workload import WorkloadSpec
from store.options import ServiceSettings


def spec_from_load(run_dir: Path) -> RunSpec:
    """A fault-free simulated run shaped like the traffic of the load run in `run_dir`."""
    info = RunInfo.load(run_dir / "run.json")
    history = read_history(run_dir / "history.csv")
    schedules = history[history["kind"] == "schedule"]
    if schedules.empty:
        raise ValueError(f"{run_dir}: the load run armed no timers; nothing to calibrate")
    senders = schedules.groupby("sender_id")
    gaps = senders["t"].diff().dropna()
    timeouts = [d["timeout"] for d in details(schedules) if "timeout" in d]
    span = float(schedules["t"].max() - schedules["t"].min()) or 1.0
    pods = sorted(history.loc[history["kind"] == "pod_start", "pod"].dropna().unique())
    workload = WorkloadSpec(
        conversations=senders.ngroups,
        arrival_window=span,
        messages_mean=max(1.0, len(schedules) / senders.ngroups),
        think_time_mean=float(gaps.mean()) if len(gaps) else 3.0,
        think_time_range=(
            (float(gaps.quantile(0.01)), float(gaps.quantile(0.99))) if len(gaps) > 1 else None
        ),
        end_probability=_share_ended(history, senders.ngroups),
        timeouts=(float(statistics.median(timeouts)),) if timeouts else (8.0,),
    )
    settings = ServiceSettings(
        poll_interval=info.service.poll_interval,
        poll_jitter=info.service.poll_jitter,
        lease_seconds=info.service.lease_seconds,
        fire_timeout=info.service.fire_timeout,
    )
    return RunSpec(
        scenario="calibration",
        seed=1,
        pods=max(1, len(pods)),
        workload=workload,
        plan=FaultPlan(),
        settings=settings,
        latency=info.latency / 2,
        poll_phase_spread=info.service.poll_interval,  # the pods started at different moments
        drain=workload.longest_timeout() + 10.0,
    )


def _share_ended(history: pd.DataFrame, conversations: int) -> float:
    cancels = history[history["kind"] == "cancel"]["sender_id"].nunique()
    return min(1.0, cancels / conversations) if conversations else 0.0


def calibrate(run_dir: Path) -> str:
    """Run the simulator at the load run's configuration; say how the two compare."""
    real = check_run(run_dir)
    spec = spec_from_load(run_dir)
    with tempfile.TemporaryDirectory(prefix="timerlab-calibrate-") as scratch:
        predicted, _ = run_and_check(spec, Path(scratch))
    lines = [
        f"calibration point: {run_dir} ({spec.pods} pods, {spec.workload.conversations} "
        f"conversations, ~{spec.workload.messages_mean:.1f} messages each every "
        f"{_gaps(spec.workload)} s, {spec.workload.timeouts[0]:g} s timeout, "
        f"poll {spec.settings.poll_interval:g} s)",
    ]
    for key, label in (
        ("lateness_p50", "fire lateness p50"),
        ("lateness_p99", "fire lateness p99"),
    ):
        sim, load = predicted.stats[key], real.stats[key]
        lines.append(
            f"  {label}: simulator {sim:.3f} s, real {load:.3f} s, "
            f"difference {sim - load:+.3f} s ({_relative(sim, load)})"
        )
    lines.append(
        f"  fires: simulator {int(predicted.stats['fires'])}, real {int(real.stats['fires'])}"
    )
    return "\n".join(lines)


def _gaps(workload: WorkloadSpec) -> str:
    if workload.think_time_range is None:
        return f"~{workload.think_time_mean:.1f}"
    low, high = workload.think_time_range
    return f"{low:.1f}-{high:.1f}"


def _relative(predicted: float, measured: float) -> str:
    if measured == 0:
        return "n/a"
    return f"{(predicted - measured) / measured:+.0%} of the real value"
