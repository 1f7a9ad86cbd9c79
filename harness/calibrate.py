"""The simulator's prediction beside a real load run, at the same configuration.

The configuration is read off the load run's own history, not its command line: how many
conversations there were, how many messages each sent and how far apart (the range of the gaps
between a conversation's messages: Locust users wait uniformly), their session timeout, the
pods and the poll interval. The simulated pods' polls are out of phase, as separately started
processes' are. The simulator then runs that workload (no faults) and
the two are compared on what capacity planning uses: fire lateness, fires and the store's
Redis script calls. Several load runs (a light one, one near saturation, one past
it) show where the simulator's prediction holds; `plot_calibration` draws predicted against
measured.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.checker import check_run
from harness.simrun import run_and_check
from record.faults import FaultPlan
from record.history import details, read_history
from record.runinfo import RunInfo
from sim.costs import ServiceCosts
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


METRICS = (
    ("lateness_p50", "fire lateness p50", "s"),
    ("lateness_p99", "fire lateness p99", "s"),
    ("fires", "fires", ""),
    ("scripts", "store script calls (EVALSHA), whole run", ""),
)
"""What a calibration compares: what capacity planning reads off a sweep."""


@dataclass(frozen=True)
class CalibrationPoint:
    """One load run beside the simulator's prediction of it."""

    run_dir: Path
    spec: RunSpec
    measured: dict[str, float]
    predicted: dict[str, float]
    per_message: float | None = None
    """A pod's CPU per message, estimated from the load run's pod CPU (`estimate_per_message`)."""

    def describe(self) -> str:
        spec = self.spec
        lines = [
            f"calibration point: {self.run_dir} ({spec.pods} pods, "
            f"{spec.workload.conversations} conversations, "
            f"~{spec.workload.messages_mean:.1f} messages each every "
            f"{_gaps(spec.workload)} s, {spec.workload.timeouts[0]:g} s timeout, "
            f"poll {spec.settings.poll_interval:g} s)"
        ]
        for key, label, unit in METRICS:
            sim, real = self.predicted.get(key), self.measured.get(key)
            if sim is None or real is None:
                lines.append(f"  {label}: not measured by this run")
                continue
            lines.append(
                f"  {label}: simulator {sim:.3f}{unit}, real {real:.3f}{unit}, "
                f"difference {sim - real:+.3f}{unit} ({_relative(sim, real)})"
            )
        if self.per_message is not None:
            used = (self.spec.costs or ServiceCosts()).pod_per_message
            lines.append(
                f"  pod CPU per message (from the pods' CPU): {self.per_message * 1e6:.0f} µs; "
                f"the simulator used {used * 1e6:.0f} µs"
            )
        return "\n".join(lines)


def calibrate(
    run_dirs: Sequence[Path], costs: ServiceCosts | None = None
) -> list[CalibrationPoint]:
    """Run the full simulator (with `costs`) at each load run's configuration."""
    return [_point(run_dir, costs) for run_dir in run_dirs]


def _point(run_dir: Path, costs: ServiceCosts | None) -> CalibrationPoint:
    real = check_run(run_dir)
    spec = dataclasses.replace(spec_from_load(run_dir), costs=costs)
    with tempfile.TemporaryDirectory(prefix="timerlab-calibrate-") as scratch:
        predicted, _ = run_and_check(spec, Path(scratch))
        simulated = json.loads((Path(scratch) / "run.json").read_text(encoding="utf-8"))
    measured = {key: real.stats[key] for key, _, _ in METRICS[:3]}
    # Redis counts the commands a script runs inside it too: only its EVALSHA calls compare.
    # Totals, not rates: the two runs last differently long after their traffic (the load
    # run's quiet period, the simulator's drain), and every message and poll is in both.
    load = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("measured", {})
    if "by_command" in load:
        measured["scripts"] = float(load["by_command"].get("evalsha", 0))
    prediction = {key: predicted.stats[key] for key, _, _ in METRICS[:3]}
    prediction["scripts"] = float(simulated["measured"]["redis_scripts"])
    per_message = None
    if "pod_cpu_seconds" in load:
        history = read_history(run_dir / "history.csv")
        messages = int((history["kind"] == "message").sum())
        per_message = estimate_per_message(
            load["pod_cpu_seconds"], messages, measured["fires"], costs or ServiceCosts()
        )
    return CalibrationPoint(run_dir, spec, measured, prediction, per_message)


def estimate_per_message(
    cpu: float, messages: int, fires: float, costs: ServiceCosts
) -> float | None:
    """A pod's own CPU per message (`pod_per_message`): the pods' CPU over the run, less what
    the other costs account for (a store call per message, a callback per fire), per message.
    It also carries the pods' idle polling and start-up, so it errs high on light runs."""
    if messages <= 0:
        return None
    other = messages * costs.pod_per_call + fires * costs.pod_per_fire
    return max(0.0, (cpu - other) / messages)


def calibrated_costs(
    points: Sequence[CalibrationPoint], costs: ServiceCosts | None
) -> ServiceCosts | None:
    """The costs the sweep used, with `pod_per_message` taken from the load runs (the median
    of their estimates), for `--costs` next time; None when no run measured its pods' CPU."""
    estimates = sorted(p.per_message for p in points if p.per_message is not None)
    if not estimates:
        return None
    runs = ", ".join(str(p.run_dir) for p in points)
    return dataclasses.replace(
        costs or ServiceCosts(),
        pod_per_message=estimates[len(estimates) // 2],
        source=f"pod_per_message from timerlab load runs {runs}",
    )


def describe(points: Sequence[CalibrationPoint]) -> str:
    return "\n".join(point.describe() for point in points)


def plot_calibration(points: Sequence[CalibrationPoint], out: Path) -> Path:
    """Predicted against measured, one panel per metric, one dot per load run; the diagonal
    is a perfect prediction."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.8))
    for axis, (key, label, _) in zip(figure.subplots(1, len(METRICS)), METRICS, strict=True):
        pairs = [(p.measured[key], p.predicted[key]) for p in points if key in p.measured]
        if pairs:
            real, sim = zip(*pairs, strict=True)
            axis.scatter(real, sim, zorder=3)
            top = max(*real, *sim) * 1.1 or 1.0
            axis.plot([0, top], [0, top], color="grey", linewidth=0.8)
        axis.set_title(label.split(" (")[0], fontsize=9)
        axis.ticklabel_format(style="sci", scilimits=(-3, 4))
        axis.set_xlabel("measured (load run)", fontsize=8)
        axis.set_ylabel("simulator", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    path = out / "calibration.png"
    figure.savefig(path, dpi=110)
    return path


def _gaps(workload: WorkloadSpec) -> str:
    if workload.think_time_range is None:
        return f"~{workload.think_time_mean:.1f}"
    low, high = workload.think_time_range
    return f"{low:.1f}-{high:.1f}"


def _relative(predicted: float, measured: float) -> str:
    if measured == 0:
        return "n/a"
    return f"{(predicted - measured) / measured:+.0%} of the real value"
