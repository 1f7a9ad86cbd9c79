"""Judging a load run: the checker's verdict, and what the users and the receiver saw.

`loadtest.run.run_load` runs the processes and leaves a run directory; this module judges it
the way sim runs are judged (the same checker), adds what only a load run has (Locust's HTTP
figures, the receiver's deduplicated fires, faults the chaos controller could not apply), and
writes `verdict.txt`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from harness.checker import Verdict, Violation, check_run
from loadtest.scenarios import REROUTED
from record.history import read_history


@dataclass
class LoadResult:
    """The verdict and the figures of one load run."""

    out: Path
    verdict: Verdict
    requests_per_s: float
    http_p50_ms: float
    http_p99_ms: float
    fire_lateness_p50_s: float
    fire_lateness_p99_s: float
    fires_raw: int
    fires_deduplicated: int
    requests: int = 0
    failed_requests: int = 0
    """Requests that failed for the user (after every pod was tried)."""
    rerouted_requests: int = 0
    """Attempts that failed (a pod down, or degraded and answering 503) and were retried."""
    stale_fires: int = 0
    """Fires claimed after a newer re-arm or a cancel of their conversation had completed."""
    scenario: str = ""

    def summary(self) -> str:
        outcome = "PASS" if self.verdict.ok else "FAIL"
        broken = ", ".join(f"{rule}×{count}" for rule, count in self.verdict.rules().items())
        lines = [
            f"load {self.scenario}: {outcome}" + (f" ({broken})" if broken else ""),
            f"  http      {self.requests} requests ({self.failed_requests} failed, "
            f"{self.rerouted_requests} rerouted to another pod), "
            f"{self.requests_per_s:.1f} req/s, p50 {self.http_p50_ms:.0f} ms, "
            f"p99 {self.http_p99_ms:.0f} ms",
            f"  fires     {self.fires_raw} raw, {self.fires_deduplicated} deduplicated "
            f"({self.fires_raw - self.fires_deduplicated} repeats dropped); "
            f"{self.stale_fires} stale (after a newer re-arm or a cancel)",
            f"  lateness  p50 {self.fire_lateness_p50_s:.3f} s, "
            f"p99 {self.fire_lateness_p99_s:.3f} s (scheduled time to callback done)",
            f"  loop lag  worst {self.verdict.stats.get('loop_lag_max', 0.0):.3f} s in any pod "
            f"(bound {self.verdict.info.loop_stall_bound:g} s)",
            f"  files     {self.out / 'verdict.txt'}, {self.out / 'history.csv'}, "
            f"{self.out / 'locust.html'}",
        ]
        return "\n".join(lines)


def judge_load(out: Path) -> LoadResult:
    """Check the run in `out`, gather its figures, write `verdict.txt`."""
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    receiver = run.get("receiver", {})
    verdict = check_run(out)
    for error in run.get("chaos_errors", []):  # a fault not applied leaves the run unproven
        verdict.violations.append(Violation("not_exercised", f"chaos: {error}", ()))
    http = _locust_figures(out / "locust_stats.csv")
    fires = _fire_figures(out / "history.csv")
    result = LoadResult(
        out=out,
        verdict=verdict,
        requests_per_s=http["Requests/s"],
        http_p50_ms=http["50%"],
        http_p99_ms=http["99%"],
        fire_lateness_p50_s=fires["p50"],
        fire_lateness_p99_s=fires["p99"],
        fires_raw=int(receiver.get("raw", 0)),
        fires_deduplicated=int(receiver.get("deduplicated", 0)),
        requests=int(http["Request Count"]),
        failed_requests=int(http["Failure Count"] - http["rerouted"]),
        rerouted_requests=int(http["rerouted"]),
        stale_fires=int(verdict.stats["stale_fires"]),
        scenario=verdict.info.scenario,
    )
    (out / "verdict.txt").write_text(verdict.table() + "\n\n" + result.summary() + "\n")
    return result


def _locust_figures(stats: Path) -> dict[str, float]:
    """The Aggregated row of Locust's stats CSV (response times in ms), and `rerouted`: the
    failures of attempts the users retried on another pod."""
    rerouted = 0.0
    with stats.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            if row.get("Name", "").endswith(REROUTED):
                rerouted += _number(row.get("Failure Count"))
            if row.get("Name") == "Aggregated":
                keys = ("Requests/s", "50%", "99%", "Request Count", "Failure Count")
                return {key: _number(row.get(key)) for key in keys} | {"rerouted": rerouted}
    raise RuntimeError(f"{stats}: no Aggregated row")


def _number(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:  # Locust writes "N/A" when nothing was measured
        return math.nan


def _fire_figures(history: Path) -> dict[str, float]:
    """Fire lateness: scheduled time to successful callback, first success per fire id."""
    frame = read_history(history)
    fires = frame[
        (frame["kind"] == "fire") & (frame["outcome"] == "fire_done") & (frame["result"] == "ok")
    ].drop_duplicates("fire_id")
    if fires.empty:
        return {"p50": math.nan, "p99": math.nan}
    lateness = fires["t"] - fires["scheduled_time"]
    return {"p50": float(lateness.quantile(0.5)), "p99": float(lateness.quantile(0.99))}
