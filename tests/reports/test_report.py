"""Reports: built from a run, opened from disk in headless Chromium, every image loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.render import render
from harness.report import build_report, pending_series
from harness.simrun import run_and_check
from record.history import read_history
from sim.scenarios import build_spec

ROOT = Path(__file__).parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _need_chromium() -> None:
    if shutil.which("chromium") is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true (apt-get install chromium)")
        pytest.skip("chromium is not installed")


def test_the_committed_example_report_renders_with_every_image(tmp_path: Path) -> None:
    _need_chromium()
    index = ROOT / "reports" / "example" / "index.html"
    assert index.exists(), "regenerate it with `make example-report`"
    shown = render(index, tmp_path / "screenshot.png")
    assert shown.images >= 4
    assert shown.broken_images == 0
    assert shown.screenshot.stat().st_size > 10_000
    for src in _image_sources(index):
        assert (index.parent / src).exists(), src


def test_a_failing_run_links_each_violation_to_its_history_rows(tmp_path: Path) -> None:
    spec = build_spec("swarm", 2, store="tests.fixtures.broken_stores.IgnoresConditionStore")
    verdict, _ = run_and_check(spec, tmp_path / "run")
    assert not verdict.ok
    report = build_report(tmp_path / "run", tmp_path / "report", verdict)
    page = (tmp_path / "report" / "violations.html").read_text()
    for violation in verdict.violations[:5]:
        assert str(violation.rows[0]) in page
    assert 'href="violations.html#' in report.index.read_text()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["rules"][verdict.violations[0].rule] >= 1


def test_pending_series_counts_armed_conversations(tmp_path: Path) -> None:
    run_and_check(build_spec("baseline", 1), tmp_path)
    series = pending_series(read_history(tmp_path / "history.csv"))
    assert series.min() >= 0
    assert series.iloc[-1] == 0  # everything fired or was cancelled by the end
    assert series.max() > 0


def _image_sources(index: Path) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]+)"', index.read_text())
