"""The benchmark suite behind `timerlab bench`: every row, side by side, on real redis-servers.

Why ratios: these machines are shared and noisy, so an absolute time says little; a ratio of
ours to the Rasa 3.21 baseline (and to the Redis limit) measured in the same run, on the same
server, with the designs' order rotated between repeats, says how the designs compare. Each
figure is the median of the repeats, and every ratio is a ratio of medians.

    report = run_bench("all", Path("reports/bench"))
    print(report.table())

writes `results.json` (every sample, median, ratio and verdict), `table.md` and `bench.png`
under `out`. Targets are reported, never asserted: a missed target is a finding, not a crash.
A row that fails is recorded with its error and the others still run.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from benchmarks.rows import claim, dropin, expiry, fallback, memory, rearm, sim
from benchmarks.rows.common import (
    Line,
    RowContext,
    RowResult,
    median,
    quiet_progress,
    stderr_progress,
)
from record.logs import configure_logging

__all__ = ["GROUPS", "ROWS", "BenchReport", "Line", "RowResult", "run_bench"]

ROWS = ("rearm", "dropin", "expiry", "claim", "memory", "fallback", "sim")
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ROWS,
    "store": ("rearm", "dropin", "expiry", "fallback"),
    "dropin": ("dropin",),
    "claim": ("claim",),
    "memory": ("memory",),
    "sim": ("sim",),
}

_RUNNERS: dict[str, Callable[[RowContext], RowResult]] = {
    "rearm": rearm.run,
    "dropin": dropin.run,
    "expiry": expiry.run,
    "claim": claim.run,
    "memory": memory.run,
    "fallback": fallback.run,
    "sim": sim.run,
}

TABLE_WIDTH = 100
LEGEND = (
    "vs base: times better than the Rasa 3.21 baseline (faster, more per second, fewer bytes);"
    " >1 is ours ahead.\nvs lim: times the limit's cost that ours pays (1.0 = at the limit, "
    "<1 = ours beats that limit).\n≥: the baseline was capped at the row's time limit, so "
    "the ratio is a lower bound."
)


@dataclass
class BenchReport:
    """One run of the suite: its rows, when and where it ran, and how."""

    rows: list[RowResult]
    started: str
    """ISO 8601 start time (UTC)."""
    machine: str
    quick: bool
    repeats: int = 3
    group: str = "all"
    seconds: float = 0.0
    """Wall time of the whole run."""
    files: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[Line]:
        return [line for row in self.rows for line in row.lines]

    def table(self) -> str:
        """The table as printed and as pasted into the README (markdown, at most 100 cols)."""
        header = ("line", "ours", "base", "limit", "vs base", "vs lim", "target", "ok")
        body: list[tuple[str, ...]] = []
        for row in self.rows:
            if row.error is not None:
                body.append((f"{row.name} ERROR", "-", "-", "-", "-", "-", "-", "MISS"))
                continue
            body.extend(_cells(line) for line in row.lines)
        widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
        right = {1, 2, 3, 4, 5}

        def render(cells: Sequence[str]) -> str:
            padded = [
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ]
            return "| " + " | ".join(padded) + " |"

        rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        mode = "quick" if self.quick else "full"
        title = (
            f"timerlab bench {self.group} ({mode}), {self.started[:16].replace('T', ' ')} UTC, "
            f"median of {self.repeats}, wall {_duration(self.seconds)}"
        )
        out = [title, f"machine: {self.machine}", "", render(header), rule]
        out += [render(cells) for cells in body]
        out += ["", *LEGEND.splitlines(), ""]
        for row in self.rows:
            if row.error is not None:
                out.append(f"- {row.name}: ERROR {row.error}")
            for note in row.notes:
                out.append(f"- {row.name}: {note}")
            for line in row.lines:
                out.extend(f"- {line.label}: {note}" for note in line.notes)
        return "\n".join(_wrap(text) for text in out)

    def to_data(self) -> dict[str, Any]:
        """What results.json holds: one entry per table line under "rows" (medians, samples,
        ratios, verdict), and how each row ran (time, error) under "row_runs"."""
        lines = self.lines()
        return {
            "tool": "timerlab bench",
            "group": self.group,
            "started": self.started,
            "machine": self.machine,
            "quick": self.quick,
            "repeats": self.repeats,
            "wall_seconds": round(self.seconds, 3),
            "targets_met": sum(1 for line in lines if line.verdict() is True),
            "targets_missed": sum(1 for line in lines if line.verdict() is False),
            "rows": [line.to_data() for line in lines],
            "row_runs": [row.to_data() for row in self.rows],
        }


def run_bench(
    group: str, out: Path, *, quick: bool = False, repeats: int = 3, progress: bool = True
) -> BenchReport:
    """Run the rows of `group`, write results.json, table.md and bench.png into `out`.

    Library logs are kept to errors while it runs (a row that stops Redis on purpose would
    otherwise fill the screen with the fallback's warnings); the previous logging
    configuration is restored afterwards.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown bench group {group!r}; choose one of {', '.join(GROUPS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    say = stderr_progress if progress else quiet_progress
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report = BenchReport([], started, machine_description(), quick, repeats, group)
    saved_logging = structlog.get_config()
    configure_logging(logging.ERROR)
    clock = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="timerlab-bench-") as scratch:
            for name in GROUPS[group]:
                ctx = RowContext(quick, repeats, Path(scratch), say)
                report.rows.append(_run_row(name, ctx))
    finally:
        structlog.configure(**saved_logging)
    report.seconds = time.perf_counter() - clock
    write_outputs(report, out)
    say(f"done in {_duration(report.seconds)}; wrote {', '.join(report.files.values())}")
    return report


def _run_row(name: str, ctx: RowContext) -> RowResult:
    """One row, timed; an exception becomes the row's error (Ctrl-C still stops the run)."""
    ctx.progress(f"{name}: starting")
    started = time.perf_counter()
    try:
        result = _RUNNERS[name](ctx)
    except Exception as exc:
        result = RowResult(name, error=f"{type(exc).__name__}: {exc}")
        ctx.progress(f"{name}: FAILED: {result.error}")
    result.seconds = time.perf_counter() - started
    ctx.progress(f"{name}: done in {_duration(result.seconds)}")
    return result


def write_outputs(report: BenchReport, out: Path) -> None:
    """results.json, table.md and bench.png, in `out` (created if needed)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    table = out / "table.md"
    plot = out / "bench.png"
    report.files = {"results": str(results), "table": str(table), "plot": str(plot)}
    results.write_text(json.dumps(report.to_data(), indent=2) + "\n", encoding="utf-8")
    table.write_text(report.table() + "\n", encoding="utf-8")
    draw(report, plot)
    costs = measured_costs(report)
    if costs and not report.quick:
        path = out / COSTS_FILE
        path.write_text(json.dumps(costs, indent=2) + "\n", encoding="utf-8")
        report.files["costs"] = str(path)


COSTS_FILE = "costs.json"
"""Service times measured by the run, in `sim/costs.py`'s fields: `timerlab sweep` reads them
from beside its `--bench` results."""


def measured_costs(report: BenchReport) -> dict[str, Any]:
    """The medians of the service times the rows measured (the dropin row: a store call's
    client CPU and Redis time); the other costs keep their defaults."""
    figures: dict[str, list[float]] = {}
    for row in report.rows:
        for line in row.lines:
            for name in ("pod_per_call", "redis_per_command"):
                figures.setdefault(name, []).extend(line.extra.get(name, []))
    costs: dict[str, Any] = {name: median(v) for name, v in figures.items() if v}
    if costs:
        costs["source"] = f"timerlab bench, {report.started} ({report.machine})"
    return costs


def draw(report: BenchReport, path: Path) -> None:
    """Two panels of bars, log scale: ours vs the baseline, and ours vs the limit, per line.

    Each bar is green when the bound of its panel is met, red when missed, grey when the line
    has no bound there; black ticks mark the bounds, and the dashed line at 1x is a tie.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lines = report.lines()
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.45 * max(len(lines), 4) + 1.6), sharey=True)
    panels = (
        ("ours vs baseline (times better)", [line.vs_base for line in lines], _base_goal, True),
        ("ours vs limit (times the limit's cost)", [line.vs_limit for line in lines],
         _limit_goal, False),
    )  # fmt: skip
    positions = list(range(len(lines)))
    for axis, (title, values, goal, at_least) in zip(axes, panels, strict=True):
        shown = [value if value is not None and value > 0 else math.nan for value in values]
        colours = []
        for line, value in zip(lines, shown, strict=True):
            bound = goal(line)
            if bound is None or math.isnan(value):
                colours.append("tab:grey")
            else:
                met = value >= bound if at_least else value <= bound
                colours.append("tab:green" if met else "tab:red")
        axis.barh(positions, shown, color=colours)
        for position, (line, value) in enumerate(zip(lines, shown, strict=True)):
            if not math.isnan(value):
                prefix = "≥" if line.baseline_capped and at_least else ""
                axis.annotate(f"{prefix}{value:.2g}x", (value, position), fontsize=8,
                              xytext=(3, 4), textcoords="offset points")  # fmt: skip
            bound = goal(line)
            if bound is not None:
                axis.plot([bound, bound], [position - 0.4, position + 0.4], color="black", lw=2)
        axis.axvline(1.0, color="grey", lw=1, ls="--")
        axis.set_xscale("log")
        finite = [value for value in shown if not math.isnan(value)] or [1.0]
        axis.set_xlim(min(0.5, min(finite) / 1.5), max(2.0, max(finite) * 2.5))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_title(title, fontsize=10)
    axes[0].set_yticks(positions, [line.label for line in lines])
    axes[0].invert_yaxis()
    mode = "quick" if report.quick else "full"
    figure.suptitle(
        f"timerlab bench {report.group} ({mode}, median of {report.repeats}), "
        f"{report.started[:10]}: green meets the panel's target, red misses it, grey has none",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _base_goal(line: Line) -> float | None:
    return None if line.target is None else line.target.min_vs_base


def _limit_goal(line: Line) -> float | None:
    return None if line.target is None else line.target.max_vs_limit


def _cells(line: Line) -> tuple[str, ...]:
    capped = line.baseline_capped
    baseline = fmt_value(line.baseline_median, line.unit)
    verdict = line.verdict()
    return (
        line.label,
        fmt_value(line.ours_median, line.unit),
        f"≥{baseline}" if capped and baseline != "n/a" else baseline,
        fmt_value(line.limit_median, line.unit),
        fmt_ratio(line.vs_base, lower_bound=capped and line.better == "lower"),
        fmt_ratio(line.vs_limit),
        "" if line.target is None else line.target.text,
        "" if verdict is None else "pass" if verdict else "MISS",
    )


def fmt_value(value: float | None, unit: str) -> str:
    """Compact figures that fit the table: 12.3k/s, 153ms, 2.01s, 331B."""
    if value is None:
        return "n/a"
    if unit == "s":
        if value < 1.0:
            return f"{value * 1000:.3g}ms"
        return f"{value:.3g}s" if value < 100 else f"{value:.0f}s"
    if unit == "B":
        return f"{value:.0f}B"
    suffix = "/s"
    for scale, letter in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


def fmt_ratio(value: float | None, *, lower_bound: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.2f}x" if value < 10 else f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"
    return f"≥{text}" if lower_bound else text


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


def _wrap(text: str) -> str:
    """Notes longer than the table wrap onto indented lines, so the output stays 100 wide."""
    if len(text) <= TABLE_WIDTH or text.startswith("|"):
        return text
    import textwrap

    return "\n".join(textwrap.wrap(text, TABLE_WIDTH, subsequent_indent="  "))


def machine_description() -> str:
    """CPU, cores, OS, Python and redis-server versions: enough to tell two runs' hosts apart."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for entry in info:
                if entry.startswith("model name"):
                    cpu = entry.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    server = "redis-server ?"
    binary = shutil.which("redis-server")
    if binary is not None:
        try:
            text = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        found = re.search(r"v=(\S+)", text)
        server = f"redis-server {found.group(1)}" if found else server
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"{cpu}, {os.cpu_count()} cpus, {platform.system()}, Python {python}, {server}"
