"""`timerlab sweep`: capacity planning with the simulator.

A grid over pods, conversations, message rate, session timeout and poll interval; one steady
simulated run per point, in parallel. Each run yields what an operator sizes for: fire lateness
(p50, p99, and the oldest due timer's age, the SLI), the Redis operations per second the pods
need, and the memory the armed timers take (bytes per timer measured on real Redis by
`timerlab bench memory`). Points beyond the single-threaded Redis ceiling, or whose polls need
more round trips than a poll interval holds, are flagged; with an SLO on lateness, the smallest
configuration that meets it is recommended. A calibration point puts the simulator's
prediction beside a real `timerlab load` run and states the difference.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from harness.executors import open_workers
from record.faults import FaultPlan
from sim.capacity import run_capacity
from sim.costs import ServiceCosts
from sim.spec import RunSpec

if TYPE_CHECKING:
    from harness.calibrate import CalibrationPoint
from sim.workload import WorkloadSpec
from store.options import ServiceSettings

DEFAULT_BYTES_PER_TIMER = 250.0
"""Used only when no `timerlab bench memory` result is given (and flagged as assumed)."""
DEFAULT_REDIS_CEILING = 50_000.0
"""Unpipelined single-connection-per-client ops/s measured with redis-benchmark here
(docs/architecture.md, section 8); used only when no bench result is given (and flagged as
assumed)."""


@dataclass(frozen=True)
class Point:
    """One configuration of the grid."""

    pods: int
    conversations: int
    message_rate: float
    """Messages per second per conversation while it is active."""
    timeout: float
    poll_interval: float

    def label(self) -> str:
        return (
            f"{self.pods} pods, {self.conversations} conv, {self.message_rate:g} msg/s, "
            f"{self.timeout:g} s timeout, poll {self.poll_interval:g} s"
        )


@dataclass(frozen=True)
class Limits:
    """What the grid is judged against, and where the figures came from."""

    bytes_per_timer: float
    bytes_source: str
    redis_ceiling: float
    ceiling_source: str
    round_trip: float
    """Seconds per Redis call (a LAN round trip plus the server time)."""

    @classmethod
    def from_bench(cls, results: Path | None, round_trip: float) -> Limits:
        """Use `timerlab bench` results when given; otherwise documented defaults, marked."""
        bytes_per_timer, bytes_source = DEFAULT_BYTES_PER_TIMER, "assumed (no bench result)"
        ceiling, ceiling_source = DEFAULT_REDIS_CEILING, "assumed (no bench result)"
        if results is not None and results.exists():
            data = json.loads(results.read_text())
            for row in data.get("rows", []):
                if row.get("row") == "memory" and row.get("ours"):
                    bytes_per_timer = float(row["ours"])
                    bytes_source = f"measured by timerlab bench ({results})"
                if row.get("row") == "redis_ceiling" and row.get("limit"):
                    ceiling = float(row["limit"])
                    ceiling_source = f"measured by timerlab bench ({results})"
        return cls(bytes_per_timer, bytes_source, ceiling, ceiling_source, round_trip)


def spec_for(
    point: Point, seconds: float, seed: int = 1, costs: ServiceCosts | None = None
) -> RunSpec:
    """A steady, fault-free run of one grid point (with service times when `costs` is
    given: `sim/costs.py`)."""
    think = 1.0 / point.message_rate
    workload = WorkloadSpec(
        conversations=point.conversations,
        arrival_window=seconds,
        messages_mean=max(2.0, point.timeout / think),
        think_time_mean=think,
        end_probability=0.2,
        timeouts=(point.timeout,),
    )
    settings = ServiceSettings(
        poll_interval=point.poll_interval, lease_seconds=30.0, fire_timeout=5.0
    )
    return RunSpec(
        scenario="sweep",
        seed=seed,
        pods=point.pods,
        workload=workload,
        plan=FaultPlan(),
        settings=settings,
        drain=point.timeout + 3 * point.poll_interval + 5.0,
        poll_phase_spread=point.poll_interval,  # pods of a deployment start at different moments
        costs=costs,
    )


def measure_point(
    args: tuple[Point, float, str, int, ServiceCosts | None, bool],
) -> dict[str, Any]:
    """Run one point with one seed (in a worker process) and return its capacity figures: in
    capacity mode (`sim/capacity.py`), or with `full` in the full simulator, judged."""
    point, seconds, out_dir, seed, costs, full = args
    spec = spec_for(point, seconds, seed, costs)
    run = _full_run(spec, Path(out_dir)) if full else _capacity_run(spec)
    duration = run["duration"]
    calls = run["redis_calls"]
    return {
        **dataclasses.asdict(point),
        "seed": seed,
        "mode": "full" if full else "capacity",
        "ok": run["ok"],
        "lateness_p50": run["lateness_p50"],
        "lateness_p99": run["lateness_p99"],
        "oldest_due_age": run["lateness_max"],
        "fires": run["fires"],
        "redis_ops_per_s": calls / duration if duration else 0.0,
        "calls_per_poll_per_pod": calls / max(1.0, duration / point.poll_interval) / point.pods,
        "peak_pending": run["peak_pending"],
        "redis_utilisation": run["redis_busy"] / duration if duration else 0.0,
        "pod_cpu_utilisation": max(run["pod_cpu_busy"], default=0.0) / duration
        if duration
        else 0.0,
    }


def _full_run(spec: RunSpec, out: Path) -> dict[str, Any]:
    """The full simulator, judged by the checker (`ok` is its verdict)."""
    from harness.report import pending_series
    from harness.simrun import run_and_check
    from record.history import read_history
    from record.logs import configure_logging

    configure_logging(40)
    verdict, _ = run_and_check(spec, out)
    run = json.loads((out / "run.json").read_text())
    measured = run.get("measured", {})
    pending = pending_series(read_history(out / "history.csv"))
    return {
        "ok": verdict.ok,
        "duration": float(run["duration"]),
        "redis_calls": int(measured.get("redis_calls", 0)),
        "redis_busy": measured.get("redis_busy", 0.0),
        "pod_cpu_busy": measured.get("pod_cpu_busy", []),
        "peak_pending": int(pending.max()) if len(pending) else 0,
        **{key: verdict.stats[key] for key in ("lateness_p50", "lateness_p99", "lateness_max")},
        "fires": verdict.stats["fires"],
    }


def _capacity_run(spec: RunSpec) -> dict[str, Any]:
    """Capacity mode: no checker runs, so `ok` is left empty."""
    result = run_capacity(spec)
    return {
        "ok": None,
        "duration": result.duration,
        "redis_calls": result.redis_calls,
        "redis_busy": result.redis_busy,
        "pod_cpu_busy": result.pod_cpu_busy,
        "peak_pending": result.peak_pending,
        "lateness_p50": result.percentile(0.5),
        "lateness_p99": result.percentile(0.99),
        "lateness_max": max(result.lateness, default=0.0),
        "fires": result.fires,
    }


def sweep(
    points: Sequence[Point],
    seconds: float,
    limits: Limits,
    *,
    jobs: int,
    slo_lateness: float | None,
    seeds: int = 1,
    costs: ServiceCosts | None = None,
    full: bool = False,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure every point with seeds 1..`seeds` in parallel (local processes, or Dask:
    `harness.executors`); one row per point, with the median over its seeds and the spread of
    p99 lateness; add memory and the flags. The scratch runs are removed afterwards."""
    scratch = tempfile.mkdtemp(prefix="timerlab-sweep-")
    work = [
        (point, seconds, os.path.join(scratch, f"point-{i}-seed-{seed}"), seed, costs, full)
        for i, point in enumerate(points)
        for seed in range(1, seeds + 1)
    ]
    try:
        with open_workers(scheduler, jobs) as workers:
            results = workers.executor.map(measure_point, work)
            bar = tqdm(results, total=len(work), unit="run", disable=not progress, file=sys.stderr)
            rows = list(bar)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return judge(over_seeds(pd.DataFrame(rows)), limits, slo_lateness)


def judge(table: pd.DataFrame, limits: Limits, slo_lateness: float | None) -> pd.DataFrame:
    """Memory, the ceiling and round-trip flags, and whether each point meets the SLO."""
    table = table.copy()
    table["memory_bytes"] = table["peak_pending"] * limits.bytes_per_timer
    table["beyond_redis_ceiling"] = table["redis_ops_per_s"] > limits.redis_ceiling
    table["beyond_round_trip"] = (
        table["calls_per_poll_per_pod"] * limits.round_trip > table["poll_interval"]
    )
    if slo_lateness is not None:
        fits = ~table["beyond_redis_ceiling"] & ~table["beyond_round_trip"]
        table["meets_slo"] = (table["lateness_p99_max"] <= slo_lateness) & fits
    return table


POINT = [field.name for field in dataclasses.fields(Point)]


def _all_judged(verdicts: pd.Series) -> bool | None:
    """Every seed's verdict passed; None when no checker ran (capacity mode)."""
    judged = verdicts.dropna()
    return None if judged.empty else bool(judged.all())


def over_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per point: the median of every figure over the point's seeds, the number of
    seeds, the spread (min, max) of p99 lateness, and `ok` only if every seed passed. An SLO
    is judged on the worst seed's p99: a configuration that meets it on a lucky seed does not
    meet it."""
    grouped = runs.groupby(POINT, sort=False)
    figures = [c for c in runs.columns if c not in {*POINT, "seed", "ok", "mode"}]
    table = grouped[figures].median().reset_index()
    table["mode"] = grouped["mode"].first().to_numpy()
    table["ok"] = grouped["ok"].agg(_all_judged).to_numpy()
    table["seeds"] = grouped["seed"].count().to_numpy()
    table["lateness_p99_min"] = grouped["lateness_p99"].min().to_numpy()
    table["lateness_p99_max"] = grouped["lateness_p99"].max().to_numpy()
    return table


def recommend(table: pd.DataFrame, slo: float) -> str:
    """The smallest configuration meeting the SLO for each load: fewest pods, then the longest
    poll interval (the least Redis traffic)."""
    lines = []
    loads = table.groupby(["conversations", "message_rate", "timeout"])
    for (conversations, rate, timeout), group in loads:
        good = group[group["meets_slo"]].sort_values(
            ["pods", "poll_interval"], ascending=[True, False]
        )
        head = f"{conversations} conversations, {rate:g} msg/s, {timeout:g} s timeout"
        if good.empty:
            lines.append(f"{head}: no configuration in the grid meets p99 lateness <= {slo:g} s")
        else:
            best = good.iloc[0]
            worst = (
                f", worst of {int(best['seeds'])} seeds {best['lateness_p99_max']:.2f} s"
                if best["seeds"] > 1
                else ""
            )
            lines.append(
                f"{head}: {int(best['pods'])} pod(s), poll every {best['poll_interval']:g} s "
                f"(p99 {best['lateness_p99']:.2f} s{worst}, "
                f"{best['redis_ops_per_s']:.0f} Redis ops/s); {headroom(table, best)}"
            )
    return "\n".join(lines)


KNEE_FACTOR = 2.0
"""The knee of a series is the first load whose p99 lateness is this many times the series'
lightest load's: below it lateness is set by the poll interval, above it by queueing."""


def headroom(table: pd.DataFrame, point: pd.Series) -> str:
    """How far `point`'s load is from the knee of its series (same pods, poll interval,
    message rate and timeout, growing conversations)."""
    keys = ["pods", "poll_interval", "message_rate", "timeout"]
    series = table[(table[keys] == point[keys]).all(axis=1)].sort_values("conversations")
    floor = series["lateness_p99"].iloc[0]
    knee = series[series["lateness_p99"] > KNEE_FACTOR * max(floor, 1e-9)]
    if knee.empty:
        return f"no knee up to {int(series['conversations'].max())} conversations in the grid"
    at = int(knee["conversations"].iloc[0])
    return f"knee at or below {at} conversations ({at / point['conversations']:.1f}x this load)"


def plot(table: pd.DataFrame, out: Path) -> list[Path]:
    """The capacity plots: lateness, Redis load, memory and the SLI against load."""
    table = table.assign(load=table["conversations"] * table["message_rate"])
    figures = []
    for column, label, name in (
        ("lateness_p99", "fire lateness p99 (s)", "lateness.png"),
        ("redis_ops_per_s", "Redis operations/s needed", "redis_ops.png"),
        ("memory_bytes", "Redis memory for armed timers (bytes)", "memory.png"),
        ("oldest_due_age", "age of the oldest due but unfired timer (s)", "oldest_due.png"),
    ):
        fig = Figure(figsize=(8, 4))
        axis = fig.subplots()
        for (pods, poll), group in table.groupby(["pods", "poll_interval"]):
            group = group.sort_values("load")
            label_ = f"{pods} pods, poll {poll:g} s"
            (line,) = axis.plot(group["load"], group[column], marker="o", label=label_)
            if column == "lateness_p99":
                axis.plot(group["load"], group["lateness_p50"], ":", color=line.get_color())
                if (group["seeds"] > 1).any():  # the spread of p99 over the seeds
                    axis.fill_between(
                        group["load"],
                        group["lateness_p99_min"],
                        group["lateness_p99_max"],
                        color=line.get_color(),
                        alpha=0.2,
                    )
        axis.set_xscale("log")
        axis.set_xlabel("load (conversations × messages/s per conversation)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        if column == "lateness_p99":
            axis.set_title("Fire lateness: p99 (solid; band: min-max over seeds), p50 (dotted)")
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        figures.append(out / name)
    return figures


def _describe_costs(costs: ServiceCosts | None) -> str:
    if costs is None:
        return "none (work takes no simulated time, so load cannot queue)"
    figures = ", ".join(
        f"{name} {value * 1e6:g} µs" if "byte" not in name else f"{name} {value * 1e9:g} ns"
        for name, value in costs.to_data().items()
        if name != "source"
    )
    return f"{figures} ({costs.source})"


def grid(
    pods: Sequence[int],
    conversations: Sequence[int],
    message_rates: Sequence[float],
    timeouts: Sequence[float],
    poll_intervals: Sequence[float],
) -> list[Point]:
    values = itertools.product(pods, conversations, message_rates, timeouts, poll_intervals)
    return [Point(*combination) for combination in values]


def write_sweep(
    table: pd.DataFrame,
    limits: Limits,
    out: Path,
    *,
    slo: float | None,
    calibration: Sequence[CalibrationPoint] | None,
    costs: ServiceCosts | None = None,
) -> Path:
    """The capacity table (CSV), the plots, the recommendation and a page tying them up."""
    import html

    from harness.report import IMAGE_CHECK, STYLE

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "capacity.csv", index=False)
    figures = plot(table, out)
    calibration_text = "none: pass --calibration RUN_DIR... (timerlab load runs)"
    if calibration:
        from harness.calibrate import describe, plot_calibration

        figures.append(plot_calibration(calibration, out))
        calibration_text = describe(calibration)
    recommendation = recommend(table, slo) if slo is not None else "no --slo-lateness given"
    (out / "recommendation.txt").write_text(recommendation + "\n", encoding="utf-8")
    columns = [
        "pods", "conversations", "message_rate", "timeout", "poll_interval", "lateness_p50",
        "lateness_p99", "lateness_p99_max", "seeds", "oldest_due_age", "redis_ops_per_s",
        "redis_utilisation", "pod_cpu_utilisation", "peak_pending", "memory_bytes",
        "beyond_redis_ceiling", "beyond_round_trip",
    ]  # fmt: skip
    shown = table[[c for c in [*columns, "meets_slo"] if c in table]].round(3)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in record) + "</tr>"
        for record in shown.itertuples(index=False)
    )
    header = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    images = "".join(f'<img src="{f.name}" alt="{f.stem}">' for f in figures)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>timerlab sweep</title><style>{STYLE}</style>
</head><body>
<h1>Capacity sweep</h1>
<p>{len(table)} simulated configurations. Memory per timer: {limits.bytes_per_timer:.0f} bytes,
{html.escape(limits.bytes_source)}. Redis ceiling: {limits.redis_ceiling:.0f} ops/s,
{html.escape(limits.ceiling_source)}. Round trip per call: {limits.round_trip * 1000:.1f} ms.
Service times: {html.escape(_describe_costs(costs))}.
Files: <a href="capacity.csv">capacity.csv</a>, <a href="recommendation.txt">recommendation.txt</a>.
</p>
<h2>Recommendation{f" (p99 lateness ≤ {slo:g} s)" if slo is not None else ""}</h2>
<pre>{html.escape(recommendation)}</pre>
<h2>Calibration against real load runs</h2>
<pre>{html.escape(calibration_text)}</pre>
<h2>Plots</h2>{images}
<h2>Capacity table</h2><table><tr>{header}</tr>{rows}</table>
{IMAGE_CHECK}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
