"""The gate passes the reference store and catches every deliberately broken store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.gate import run_gate
from record.history import read_history
from sim.scenarios import build_spec

BROKEN = (
    "tests.fixtures.broken_stores.DeletesOnListStore",
    "tests.fixtures.broken_stores.RacyDeleteStore",
    "tests.fixtures.broken_stores.IgnoresConditionStore",
    "tests.fixtures.broken_stores.no_reconcile_stack",
    "tests.fixtures.broken_stores.RefusesWritesStore",
    "tests.fixtures.broken_stores.RefusesSomeWritesStore",
    "tests.fixtures.broken_stores.DropsSessionStore",
    "tests.fixtures.broken_stores.FirstSessionStore",
    "tests.fixtures.broken_stores.DropsMetadataStore",
    "tests.fixtures.broken_stores.BrokenListStore",
)
CAUGHT_BY = {
    "RefusesWritesStore": "write_failed",
    "RefusesSomeWritesStore": "write_failed",
    "DropsSessionStore": "payload",
    "FirstSessionStore": "payload",
    "DropsMetadataStore": "payload",
    "BrokenListStore": "store_error",
}
"""What each store that breaks the documented interface must be caught by."""


@pytest.mark.parametrize("store", BROKEN)
def test_the_default_gate_fails_a_broken_store(store: str, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["-q", "gate", "--seeds", "200", "--store", store, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL seed" in out
    assert "replay: timerlab replay" in out


@pytest.mark.parametrize("store", BROKEN)
def test_a_broken_store_is_caught_on_many_seeds_not_a_lucky_one(store: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    specs = [build_spec("swarm", seed, store=store) for seed in range(1, 21)]
    result = run_gate(specs, jobs=2, keep_going=True, keep_dir=None, progress=False)
    assert len(result.failures) >= 5, [o.first_violation for o in result.failures]


@pytest.mark.parametrize("name", sorted(CAUGHT_BY))
def test_a_store_that_breaks_the_interface_fails_within_40_seeds_by_its_rule(name: str) -> None:
    store = f"tests.fixtures.broken_stores.{name}"
    specs = [build_spec("swarm", seed, store=store) for seed in range(1, 41)]
    result = run_gate(specs, jobs=2, keep_going=True, keep_dir=None, progress=False)
    assert result.failures, f"{name} passed 40 seeds"
    assert all(CAUGHT_BY[name] in outcome.rules for outcome in result.failures)


def test_a_store_that_raises_in_get_expired_timers_fails_with_a_store_error_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = "tests.fixtures.broken_stores.BrokenListStore"
    out = tmp_path / "run"
    code = main(["-q", "sim", "--seed", "1", "--store", store, "--out", str(out), "--no-report"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err
    assert "store_error" in captured.out
    history = read_history(out / "history.csv")
    errors = history[history["kind"] == "store_error"]
    assert len(errors) > 0
    assert "AttributeError" in errors["detail"].iloc[0]


def test_a_correct_five_method_store_passes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The control: a correct store used through the documented methods alone."""
    specs = [
        build_spec("swarm", seed, store="tests.fixtures.broken_stores.DictStore")
        for seed in range(1, 31)
    ]
    result = run_gate(specs, jobs=2, keep_going=True, keep_dir=tmp_path, progress=False)
    assert result.ok, [o.first_violation for o in result.failures]


def test_gate_usage_errors_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["gate", "--seeds", "0"]) == 2
    assert main(["gate", "--store", "no.such.module.Store"]) == 2
    assert main(["gate", "--store", "tests.fixtures.broken_stores.ROUND_TRIP"]) == 2
    err = capsys.readouterr().err
    assert err.count("timerlab:") == 3
    assert "Traceback" not in err


def test_a_failure_of_timerlab_itself_exits_3_with_one_line_and_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.simrun

    def broken(*args: object) -> None:
        raise RuntimeError("the simulator broke")

    monkeypatch.setattr(harness.simrun, "run_world", broken)
    out = str(tmp_path / "run")
    assert main(["-q", "sim", "--seed", "5", "--out", out, "--no-report"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error (RuntimeError: the simulator broke)" in err
    assert "replay: timerlab replay --scenario swarm --seed 5" in err
    # The gate reports each harness error apart from the verdicts.
    gate = ["-q", "gate", "--seeds", "3", "--keep-going", "--out", out]
    gate += ["--junit", str(tmp_path / "j.xml")]
    assert main(gate) == 3
    captured = capsys.readouterr()
    assert captured.out.count("HARNESS ERROR seed") == 3
    assert "Traceback" not in captured.err
    assert (tmp_path / "j.xml").read_text().count('type="harness_error"') == 3


def test_junit_and_json_outputs_give_one_entry_per_seed(tmp_path: Path) -> None:
    from junitparser import Failure, JUnitXml

    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.json"
    store = "tests.fixtures.broken_stores.DropsSessionStore"
    args = ["-q", "gate", "--seeds", "4", "--keep-going", "--store", store]
    args += ["--out", str(tmp_path / "runs"), "--junit", str(junit), "--json", str(summary)]
    assert main(args) == 1
    suites = list(JUnitXml.fromfile(str(junit)))
    cases = [case for suite in suites for case in suite]
    assert [case.name for case in cases] == [f"seed {seed}" for seed in range(1, 5)]
    for case in cases:
        [failure] = case.result
        assert isinstance(failure, Failure)
        assert "payload" in failure.message
        assert "replay: timerlab replay --scenario swarm --seed" in failure.text
        assert "report: " in failure.text
    data = json.loads(summary.read_text())
    assert [item["seed"] for item in data["seeds"]] == [1, 2, 3, 4]
    assert all(not item["passed"] and item["rules"]["payload"] > 0 for item in data["seeds"])
    assert all(len(item["history_hash"]) == 64 for item in data["seeds"])
    assert data["failed"] == [1, 2, 3, 4]
    assert data["armed"] > 0
    assert data["fired"] > 0
