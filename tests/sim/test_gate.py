"""The gate passes the reference store and catches every deliberately broken store."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.gate import run_gate
from sim.scenarios import build_spec

BROKEN = (
    "tests.fixtures.broken_stores.DeletesOnListStore",
    "tests.fixtures.broken_stores.RacyDeleteStore",
    "tests.fixtures.broken_stores.IgnoresConditionStore",
    "tests.fixtures.broken_stores.no_reconcile_stack",
)


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
