"""`timerlab sweep` on a small grid: table, plots, recommendation, calibration, a page that
renders with every image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.calibrate import calibrate, describe, spec_from_load
from harness.cli import main
from harness.simrun import run_and_check
from harness.sweep import Limits, judge, over_seeds, recommend
from sim.scenarios import build_spec
from tests.reports.test_report import _need_chromium


def test_a_small_sweep_writes_table_plots_and_recommendation(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    calibration_run = tmp_path / "calibration"
    run_and_check(build_spec("baseline", 1), calibration_run)
    out = tmp_path / "sweep"
    code = main([
        "-q", "sweep", "--pods", "1,2", "--conversations", "50,150", "--duration", "40",
        "--slo-lateness", "2.0", "--calibration", str(calibration_run), "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "capacity.csv")
    assert len(table) == 4
    assert {"lateness_p99", "redis_ops_per_s", "memory_bytes", "oldest_due_age"} <= set(table)
    assert (table["redis_ops_per_s"] > 0).all()
    for name in ("lateness.png", "redis_ops.png", "memory.png", "oldest_due.png"):
        assert (out / name).stat().st_size > 5_000
    assert (out / "calibration.png").stat().st_size > 5_000
    recommendation = (out / "recommendation.txt").read_text()
    assert "pod(s)" in recommendation or "no configuration" in recommendation
    printed = capsys.readouterr().out
    assert "calibration point" in printed
    assert "difference" in printed


def test_the_sweep_page_renders_with_every_image(tmp_path: Path) -> None:
    _need_chromium()
    from harness.render import render

    out = tmp_path / "sweep"
    assert main(["-q", "sweep", "--pods", "1", "--conversations", "40", "--duration", "30",
                 "--out", str(out)]) == 0  # fmt: skip
    shown = render(out / "index.html", tmp_path / "shot.png")
    assert shown.images == 4
    assert shown.broken_images == 0


def test_calibration_reads_the_workload_off_the_history(tmp_path: Path) -> None:
    run_and_check(build_spec("baseline", 3), tmp_path)
    spec = spec_from_load(tmp_path)
    assert spec.pods == 3
    assert spec.workload.conversations == 60
    [point] = calibrate([tmp_path])
    assert "difference" in describe([point])
    assert point.predicted["fires"] > 0
    assert point.measured["fires"] > 0
    assert "store script calls (EVALSHA), whole run: not measured by this run" in point.describe()


def test_seeds_per_point_give_the_median_and_the_spread(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert main(["-q", "sweep", "--pods", "1", "--conversations", "40", "--duration", "30",
                 "--seeds", "3", "--slo-lateness", "5", "--out", str(out)]) == 0  # fmt: skip
    table = pd.read_csv(out / "capacity.csv")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["seeds"] == 3
    assert row["lateness_p99_min"] <= row["lateness_p99"] <= row["lateness_p99_max"]
    assert "worst of 3 seeds" in (out / "recommendation.txt").read_text()


def test_an_slo_is_met_only_if_the_worst_seed_meets_it() -> None:
    runs = pd.DataFrame(
        [
            {"pods": 1, "conversations": 10, "message_rate": 0.1, "timeout": 30.0,
             "poll_interval": 1.0, "seed": seed, "mode": "full", "ok": True, "lateness_p50": 0.5,
             "lateness_p99": p99, "oldest_due_age": p99, "fires": 10, "redis_ops_per_s": 5.0,
             "calls_per_poll_per_pod": 1.0, "peak_pending": 10}
            for seed, p99 in ((1, 1.0), (2, 3.0), (3, 1.2))
        ]
    )  # fmt: skip
    table = over_seeds(runs)
    row = table.iloc[0]
    assert (row["lateness_p99"], row["lateness_p99_min"], row["lateness_p99_max"]) == (
        1.2,
        1.0,
        3.0,
    )
    assert row["seeds"] == 3
    limits = Limits(250.0, "test", 50_000.0, "test", 0.0005)
    assert not judge(table, limits, 2.0)["meets_slo"].iloc[0]  # the median (1.2) alone would
    assert "no configuration in the grid meets" in recommend(judge(table, limits, 2.0), 2.0)
    assert judge(table, limits, 3.0)["meets_slo"].iloc[0]


def test_a_sweep_runs_with_the_service_times_the_bench_measured(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "costs.json").write_text('{"pod_per_call": 0.0002, "source": "my bench"}', "utf-8")
    out = tmp_path / "sweep"
    assert main(["-q", "sweep", "--pods", "1", "--conversations", "40", "--duration", "20",
                 "--bench", str(bench / "results.json"), "--out", str(out)]) == 0  # fmt: skip
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "pod_per_call 200 µs" in page
    assert "my bench" in page


def test_sweep_slices_merge_into_the_whole_sweep(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    grid = ["--pods", "1,2", "--conversations", "40,80", "--duration", "20",
            "--slo-lateness", "2"]  # fmt: skip
    assert main(["-q", "sweep", *grid, "--out", str(tmp_path / "whole")]) == 0
    for k in (1, 2, 3):
        out = tmp_path / f"slice{k}"
        assert main(["-q", "sweep", *grid, "--shard", f"{k}/3", "--out", str(out)]) == 0
    slices = [str(tmp_path / f"slice{k}") for k in (3, 1, 2)]
    merged = tmp_path / "merged"
    assert main(["-q", "sweep", "--merge", *slices, "--slo-lateness", "2",
                 "--out", str(merged)]) == 0  # fmt: skip
    whole = pd.read_csv(tmp_path / "whole" / "capacity.csv")
    both = pd.read_csv(merged / "capacity.csv")
    pd.testing.assert_frame_equal(both, whole)
    assert (merged / "recommendation.txt").read_text() == (
        tmp_path / "whole" / "recommendation.txt"
    ).read_text()
    capsys.readouterr()
    assert main(["-q", "sweep", "--merge", *slices[:2], "--out", str(tmp_path / "x")]) == 2
    assert "slices missing: 2/3" in capsys.readouterr().err
    assert main(["-q", "sweep", "--pods", "1", "--conversations", "40", "--duration", "10",
                 "--shard", "2/3", "--out", str(tmp_path / "z")]) == 2  # fmt: skip
    assert "the grid has 1 point(s)" in capsys.readouterr().err
    other = tmp_path / "other"
    assert main(["-q", "sweep", "--pods", "1,2,4", "--conversations", "40", "--duration", "10",
                 "--shard", "2/3", "--out", str(other)]) == 0  # fmt: skip
    assert main(["-q", "sweep", "--merge", slices[0], slices[1], str(other),
                 "--out", str(tmp_path / "y")]) == 2  # fmt: skip
    assert "different sweeps" in capsys.readouterr().err


def test_a_pods_cpu_per_message_is_what_the_other_costs_leave() -> None:
    from harness.calibrate import estimate_per_message
    from sim.costs import ServiceCosts

    costs = ServiceCosts(pod_per_call=100e-6, pod_per_fire=300e-6)
    # 2 s of CPU for 1,000 messages and 500 fires: 0.1 s of calls, 0.15 s of callbacks.
    assert estimate_per_message(2.0, 1000, 500, costs) == pytest.approx(1.75e-3)
    assert estimate_per_message(0.01, 1000, 500, costs) == 0.0
    assert estimate_per_message(1.0, 0, 0, costs) is None
