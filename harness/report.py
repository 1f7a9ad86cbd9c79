"""`timerlab report`: one run (simulated or load) as a page you can open from disk and share.

Figures use matplotlib's object API (`Figure`), never pyplot: no global state and no display
backend, so reports build on servers and in CI. The page (`index.html`) has no script from the
network and no server behind it: figures are
PNG files beside it, tables are CSV files beside it, and `summary.json` holds the verdict for
machines. Everything is drawn from the run's history and the checker's verdict, so a sim run and
a load run get the same report.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.checker import DECLARED, RULES, Verdict, check_run
from record.history import details, read_history

COLORS = {
    "redis_outage": "#d62728",
    "redis_restart": "#9467bd",
    "partial_outage": "#ff7f0e",
    "slow_redis": "#bcbd22",
    "clock_skew": "#17becf",
    "pod_crash": "#7f7f7f",
    "crash_mid_claim": "#8c564b",
    "fallback": "#ff9896",
    "down": "#404040",
}
HISTORY_COPY_LIMIT = 50 * 1024 * 1024
"""A history larger than this is linked, not copied, into the report."""


@dataclass(frozen=True)
class Report:
    """Where a built report is, and what it says."""

    index: Path
    verdict: Verdict
    figures: tuple[Path, ...]


def build_report(run_dir: Path, out: Path | None = None, verdict: Verdict | None = None) -> Report:
    """Build the report of the run in `run_dir` into `out` (default: `run_dir/report`)."""
    out = out or run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    verdict = verdict or check_run(run_dir)
    frame = read_history(run_dir / "history.csv")
    figures = [
        timeline_figure(frame, verdict, out / "timeline.png"),
        lateness_figure(verdict, out / "lateness.png"),
        pending_figure(frame, out / "pending.png"),
        per_pod_figure(frame, out / "per_pod.png"),
    ]
    locust = locust_figure(run_dir, out / "locust.png")
    if locust is not None:
        figures.append(locust)
    _write_tables(frame, verdict, out)
    history = run_dir / "history.csv"
    if history.stat().st_size <= HISTORY_COPY_LIMIT and history.parent.resolve() != out.resolve():
        shutil.copyfile(history, out / "history.csv")
    (out / "violations.html").write_text(_violations_page(frame, verdict), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index_page(verdict, figures, locust is not None), encoding="utf-8")
    return Report(index, verdict, tuple(figures))


# -- figures ----------------------------------------------------------------------------------


def timeline_figure(frame: pd.DataFrame, verdict: Verdict, path: Path) -> Path:
    """Faults, each pod's fallback state and downtime, and the fire rate, on one time axis."""
    # Seconds since the run began: a load run's history keeps the hosts' Unix time.
    origin = float(frame["t"].min()) if len(frame) else 0.0
    spans = pd.DataFrame(verdict.timeline, columns=["lane", "what", "kind", "start", "end"])
    spans[["start", "end"]] -= origin
    lanes = ["faults", *sorted({lane for lane in spans["lane"] if lane != "faults"})]
    fires = frame[(frame["kind"] == "fire") & (frame["outcome"] == "fire_done")]["t"] - origin
    end = float(frame["t"].max()) - origin if len(frame) else 1.0
    lags = frame[frame["kind"] == "loop_lag"].assign(t=lambda f: f["t"] - origin)
    ratios = [max(1, len(lanes)), 2, *([2] if len(lags) else [])]
    fig = Figure(figsize=(11, 2.2 + 0.45 * len(lanes) + (1.6 if len(lags) else 0)))
    top, bottom, *rest = fig.subplots(
        len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios}
    )
    for index, lane in enumerate(lanes):
        for span in spans[spans["lane"] == lane].itertuples():
            top.barh(
                index, span.end - span.start, left=span.start, height=0.6,
                color=COLORS.get(span.kind, "#1f77b4"), alpha=0.85,
            )  # fmt: skip
            if lane == "faults" and span.what != span.kind:  # name the pod a fault targets
                top.text(span.start, index + 0.35, span.what, fontsize=7, va="bottom")
    top.set_yticks(range(len(lanes)), labels=lanes)
    top.invert_yaxis()
    kinds = sorted(set(spans["kind"]))
    handles = [Rectangle((0, 0), 1, 1, color=COLORS.get(k, "#1f77b4")) for k in kinds]
    if handles:
        top.legend(handles, kinds, fontsize=7, loc="upper right", ncols=min(4, len(kinds)))
    top.set_title("Faults (top lane); each pod's fallback and downtime")
    bins = max(10, min(400, int(end)))
    bottom.hist(fires, bins=bins, range=(0, end), color="#2ca02c")
    bottom.set_ylabel("fires / bin")
    bottom.set_xlabel("time (s)")
    bottom.set_title(f"Fire rate ({end / bins:.1f} s bins)")
    if rest:
        _loop_lag_panel(rest[0], lags, verdict.info.loop_stall_bound)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _loop_lag_panel(axes: Any, lags: pd.DataFrame, bound: float) -> None:
    """Each pod's worst event-loop lag per second, against the loop_stall bound."""
    detail = details(lags)
    values = pd.Series([float(d.get("lag", 0.0)) for d in detail], index=lags.index)
    for pod in sorted(lags["pod"].dropna().unique()):
        mine = lags["pod"] == pod
        axes.plot(lags["t"][mine], values[mine], drawstyle="steps-pre", label=str(pod))
    axes.axhline(bound, color="#d62728", linestyle="--", linewidth=1, label="loop_stall bound")
    axes.set_ylabel("lag (s)")
    axes.set_title("Event-loop lag per pod (worst per second)")
    axes.legend(fontsize=7, loc="upper right")


def lateness_figure(verdict: Verdict, path: Path) -> Path:
    """Fire lateness (fire time - true deadline) as a CDF per pod, with the bound marked."""
    fires = pd.DataFrame(verdict.fires, columns=["pod", "lateness"])
    fig = Figure(figsize=(8, 4.2))
    axis = fig.subplots()
    for pod, group in fires.groupby("pod"):
        values = group["lateness"].sort_values().to_numpy()
        axis.step(
            values,
            [(i + 1) / len(values) for i in range(len(values))],
            where="post",
            label=str(pod),
        )
    bound = verdict.bounds[0].value if verdict.bounds else None
    if bound is not None:
        axis.axvline(bound, color="red", linestyle="--", label=f"bound {bound:.2f} s")
    axis.set_xlabel("lateness (s)")
    axis.set_ylabel("fraction of fires")
    axis.set_title("Fire lateness CDF per pod (outage time included)")
    axis.grid(alpha=0.3)
    if len(fires):
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def pending_series(frame: pd.DataFrame) -> pd.Series:
    """Armed timers over time: a conversation is pending from its schedule until it is
    cancelled or claimed."""
    events = frame[frame["kind"].isin(["schedule", "cancel", "claim"])][["t", "kind", "sender_id"]]
    if events.empty:
        return pd.Series(dtype=float)
    armed = (events["kind"] == "schedule").astype(int)
    before = armed.groupby(events["sender_id"]).shift(fill_value=0)
    delta = armed - before
    return pd.Series(delta.cumsum().to_numpy(), index=events["t"].to_numpy())


def pending_figure(frame: pd.DataFrame, path: Path) -> Path:
    series = pending_series(frame)
    fig = Figure(figsize=(11, 3))
    axis = fig.subplots()
    if len(series):
        axis.step(series.index, series.to_numpy(), where="post", color="#1f77b4")
    axis.set_xlabel("time (s)")
    axis.set_ylabel("armed timers")
    axis.set_title("Pending timers over time")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def per_pod_figure(frame: pd.DataFrame, path: Path) -> Path:
    """Claims and successful fires per pod."""
    claims = frame[frame["kind"] == "claim"].groupby("pod").size()
    fires = frame[(frame["kind"] == "fire") & (frame["result"] == "ok")].groupby("pod").size()
    table = pd.DataFrame({"claims": claims, "fires": fires}).fillna(0)
    fig = Figure(figsize=(7, 3.2))
    axis = fig.subplots()
    if len(table):
        table.plot.bar(ax=axis, rot=0, color=["#1f77b4", "#2ca02c"])
    axis.set_ylabel("count")
    axis.set_title("Claims and fires per pod")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def locust_figure(run_dir: Path, path: Path) -> Path | None:
    """Locust requests/s and latency over time (load runs only)."""
    history = run_dir / "locust_stats_history.csv"
    if not history.exists():
        return None
    stats = pd.read_csv(history)
    stats = stats[stats["Name"] == "Aggregated"]
    if stats.empty:
        return None
    seconds = stats["Timestamp"] - stats["Timestamp"].min()
    fig = Figure(figsize=(11, 5))
    rate, latency = fig.subplots(2, 1, sharex=True)
    rate.plot(seconds, stats["Requests/s"], color="#1f77b4")
    rate.set_ylabel("requests/s")
    rate.set_title("Locust load")
    for column in ("50%", "95%", "99%"):
        if column in stats:
            latency.plot(
                seconds, pd.to_numeric(stats[column], errors="coerce"), label=f"p{column[:-1]}"
            )
    latency.set_ylabel("HTTP latency (ms)")
    latency.set_xlabel("time since start (s)")
    latency.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# -- tables -----------------------------------------------------------------------------------


def _write_tables(frame: pd.DataFrame, verdict: Verdict, out: Path) -> None:
    pd.DataFrame(verdict.fires).to_csv(out / "fires.csv", index=False)
    pd.DataFrame(
        [
            {"rule": v.rule, "message": v.message, "rows": " ".join(map(str, v.rows))}
            for v in verdict.violations
        ],
        columns=["rule", "message", "rows"],
    ).to_csv(out / "violations.csv", index=False)
    pd.DataFrame(
        [{"class": name, "count": verdict.declared.get(name, 0)} for name in DECLARED]
    ).to_csv(out / "declared.csv", index=False)
    pd.DataFrame(verdict.timeline, columns=["lane", "what", "kind", "start", "end"]).to_csv(
        out / "timeline.csv", index=False
    )
    summary = verdict.to_data()
    summary["events"] = {str(k): int(v) for k, v in frame["kind"].value_counts().items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


# -- pages ------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .pass { color: #2ca02c; } .fail { color: #d62728; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; } tr.bad td { background: #fde8e8; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; } code { font-size: 0.9em; }
"""

IMAGE_CHECK = """<script>
// Marks images that failed to load, so a rendering check can tell (no network is used).
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
  document.body.dataset.brokenImages = String(broken.length);
  document.body.dataset.images = String(document.images.length);
});
</script>"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], bad: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{cell}</td>' if isinstance(cell, int | float) else f"<td>{cell}</td>"
            for cell in row
        )
        marker = ' class="bad"' if index < len(bad) and bad[index] else ""
        body.append(f"<tr{marker}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _index_page(verdict: Verdict, figures: Sequence[Path], has_locust: bool) -> str:
    info = verdict.info
    outcome = '<span class="pass">PASS</span>' if verdict.ok else '<span class="fail">FAIL</span>'
    rules = verdict.rules()
    rule_rows = [
        (
            f'<a href="violations.html#{rule}">{rule}</a>' if rules.get(rule) else rule,
            rules.get(rule, 0),
        )
        for rule in RULES
    ]
    declared_rows = [(name, verdict.declared.get(name, 0)) for name in DECLARED]
    bound_rows = [
        (html.escape(b.name), f"<code>{html.escape(b.formula)}</code>",
         html.escape(" + ".join(f"{v:.3f}" for _, v in b.terms)), f"{b.value:.3f} s")
        for b in verdict.bounds
    ]  # fmt: skip
    exercised_rows = [(html.escape(k), html.escape(v)) for k, v in verdict.exercised.items()]
    info_rows = [(k, html.escape(str(v))) for k, v in info.to_data().items()]
    stats_rows = [(k, round(v, 3) if isinstance(v, float) else v) for k, v in verdict.stats.items()]
    locust_note = ", Locust CSV and HTML beside the run" if has_locust else ""
    title = html.escape(
        f"{info.scenario} seed {info.seed}" if info.seed is not None else info.scenario
    )
    faults_table = (
        _table(("fault", "evidence"), exercised_rows)
        if exercised_rows
        else "<p>No faults in this run.</p>"
    )
    images = "\n".join(
        f'<h3>{html.escape(_caption(path.name))}</h3><img src="{path.name}" alt="{path.stem}">'
        for path in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>timerlab report: {title}</title>
<style>{STYLE}</style></head>
<body>
<h1>{title}: {outcome}</h1>
<p>{html.escape(info.kind)} run, {len(verdict.violations)} violation(s).
Files: <a href="summary.json">summary.json</a>, <a href="history.csv">history.csv</a>,
<a href="fires.csv">fires.csv</a>, <a href="violations.csv">violations.csv</a>,
<a href="declared.csv">declared.csv</a>, <a href="timeline.csv">timeline.csv</a>{locust_note}.</p>
<h2>Verdict</h2>
{_table(("rule", "violations"), rule_rows, [rules.get(r, 0) > 0 for r in RULES])}
<h2>Bounds</h2>
{_table(("bound", "formula", "values", "total"), bound_rows)}
<h2>Declared losses</h2>
{_table(("class", "count"), declared_rows)}
<h2>Faults exercised</h2>
{faults_table}
<h2>Figures</h2>
{images}
<h2>Statistics</h2>
{_table(("statistic", "value"), stats_rows)}
<h2>Run</h2>
{_table(("parameter", "value"), info_rows)}
{IMAGE_CHECK}
</body></html>
"""


def _rule_link(rule: str) -> str:
    return f'<a href="violations.html#{rule}">{rule}</a>'


def _caption(name: str) -> str:
    return {
        "timeline.png": "Timeline: faults, fallback state per pod, fire rate, event-loop lag",
        "lateness.png": "Fire lateness (CDF per pod)",
        "pending.png": "Pending timers over time",
        "per_pod.png": "Claims and fires per pod",
        "locust.png": "Locust: requests/s and latency over time",
    }.get(name, name)


def _cell(value: Any) -> str:
    return "" if value is None or value is pd.NA or value != value else html.escape(str(value))


def _violations_page(frame: pd.DataFrame, verdict: Verdict) -> str:
    """Every violation with the history rows it points at."""
    columns = [
        "seq",
        "t",
        "pod",
        "kind",
        "sender_id",
        "scheduled_time",
        "version",
        "instance",
        "fire_id",
        "attempt",
        "origin",
        "outcome",
        "result",
        "detail",
    ]
    by_seq = frame.set_index("seq")
    sections = []
    seen_rules: set[str] = set()
    for number, violation in enumerate(verdict.violations):
        anchor = f' id="{violation.rule}"' if violation.rule not in seen_rules else ""
        seen_rules.add(violation.rule)
        rows = [
            [str(seq), *(_cell(value) for value in by_seq.loc[seq].reindex(columns[1:]))]
            for seq in violation.rows
            if seq in by_seq.index
        ]
        sections.append(
            f'<h3{anchor}><a id="v{number}">{html.escape(violation.rule)}</a></h3>'
            f"<p>{html.escape(violation.message)}</p>{_table(columns, rows)}"
        )
    body = "\n".join(sections) or "<p>No violations.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Violations</title><style>{STYLE}</style></head>
<body><h1>Violations ({len(verdict.violations)})</h1>
<p><a href="index.html">back to the report</a></p>
{body}
</body></html>
"""
