"""A gate split over CI jobs (`--shard K/N`), merged back (`--merge`), or run on Dask
(`--scheduler`), gives the verdict and the history hashes of the gate run in one piece."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.gate import _keep
from harness.shards import Shard, ShardError
from harness.simrun import run_seed
from sim.scenarios import build_spec

FIRST = 6_100_000
"""Seeds no other test uses."""
SEEDS = 5
LIMIT = ["--conversations-limit", "40"]
"""Small runs: these tests are about splitting and merging, not about the store."""


def _gate(tmp_path: Path, name: str, *options: str) -> tuple[int, dict[str, Any]]:
    summary = tmp_path / f"{name}.json"
    code = main(
        [
            "-q", "gate", "--seeds", str(SEEDS), "--first-seed", str(FIRST), *LIMIT,
            "--jobs", "2", "--out", str(tmp_path / name), "--json", str(summary), *options,
        ]
    )  # fmt: skip
    return code, json.loads(summary.read_text(encoding="utf-8"))


def _hashes(data: dict[str, Any]) -> dict[int, str]:
    return {item["seed"]: item["history_hash"] for item in data["seeds"]}


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0", "-1/2", ""])
def test_a_bad_shard_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ShardError, match="--shard must be K/N"):
        Shard.parse(text)


@given(st.integers(1, 60), st.integers(1, 8))
def test_the_slices_cover_every_seed_once(seeds: int, count: int) -> None:
    planned = list(range(100, 100 + seeds))
    slices = [Shard(index, count).select(planned) for index in range(1, count + 1)]
    assert sorted(seed for part in slices for seed in part) == planned
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # balanced


def test_slices_merge_into_the_whole_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, whole = _gate(tmp_path, "whole")
    assert code == 0
    parts = [_gate(tmp_path, f"part{k}", "--shard", f"{k}/2") for k in (1, 2)]
    assert [code for code, _ in parts] == [0, 0]
    assert [len(data["seeds"]) for _, data in parts] == [3, 2]
    merged_json, merged_xml = tmp_path / "merged.json", tmp_path / "merged.xml"
    inputs = [str(tmp_path / "part2.json"), str(tmp_path / "part1.json")]  # any order
    capsys.readouterr()
    assert (
        main(["gate", "--merge", *inputs, "--json", str(merged_json), "--junit", str(merged_xml)])
        == 0
    )
    assert f"{SEEDS} of {SEEDS} seeds passed across 2 slice(s)" in capsys.readouterr().out
    merged = json.loads(merged_json.read_text(encoding="utf-8"))
    assert _hashes(merged) == _hashes(whole)  # the same runs, bit for bit
    assert (merged["armed"], merged["fired"]) == (whole["armed"], whole["fired"])
    assert merged["faults_exercised"] == whole["faults_exercised"]
    assert merged["passed"] is True
    assert merged_xml.read_text(encoding="utf-8").count("<testcase") == SEEDS


def _summary(tmp_path: Path, name: str, shard: str | None, seeds: list[int]) -> Path:
    """A slice's summary as `gate --json` writes it (the merge reads nothing else)."""
    data = {
        "command": "timerlab gate",
        "gate": {
            "scenario": "swarm", "store": None, "store_config": None, "pods": 3, "plan": None,
            "conversations_limit": None, "first_seed": 1, "seeds": 4, "shard": shard,
        },
        "passed": True, "seconds": 1.0, "failed": [], "harness_errors": [],
        "seeds": [
            {"seed": seed, "passed": True, "rules": {}, "history_hash": f"h{seed}", "seconds": 0.1}
            for seed in seeds
        ],
        "armed": 10, "fired": 9, "faults_exercised": {"redis_outage": 1}, "declared": {},
        "slowest": [],
    }  # fmt: skip
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _merge_error(paths: list[Path], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["gate", "--merge", *map(str, paths)]) == 2
    return capsys.readouterr().err


def test_a_merge_refuses_what_would_make_its_verdict_lie(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = _summary(tmp_path, "one", "1/2", [1, 3])
    two = _summary(tmp_path, "two", "2/2", [2, 4])
    assert "slices missing: 2/2" in _merge_error([one], capsys)
    assert "more than once: 1" in _merge_error([one, one, two], capsys)
    three = _summary(tmp_path, "three", "2/3", [2])
    assert "cut differently" in _merge_error([one, three], capsys)
    other = _summary(tmp_path, "other", "2/2", [2, 4])
    data = json.loads(other.read_text(encoding="utf-8"))
    data["gate"]["store"] = "my.Store"
    other.write_text(json.dumps(data), encoding="utf-8")
    assert "different gates" in _merge_error([one, other], capsys)
    junk = tmp_path / "junk.json"
    junk.write_text("[]", encoding="utf-8")
    assert "not a summary written by" in _merge_error([junk], capsys)
    assert "cannot read" in _merge_error([tmp_path / "absent.json"], capsys)
    assert main(["gate", "--merge", str(one), str(two)]) == 0


def test_a_failed_or_unfinished_slice_fails_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = _summary(tmp_path, "one", "1/2", [1, 3])
    two = _summary(tmp_path, "two", "2/2", [2])  # stopped early: seed 4 never ran
    data = json.loads(two.read_text(encoding="utf-8"))
    data["seeds"][0].update(
        passed=False,
        rules={"lost": 1},
        first_violation="lost: t",
        replay="timerlab replay x",
        run="r",
    )
    data.update(passed=False, failed=[2])
    two.write_text(json.dumps(data), encoding="utf-8")
    merged = tmp_path / "merged.json"
    assert main(["gate", "--merge", str(one), str(two), "--json", str(merged)]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed 2: lost: t" in out
    assert "1 seeds not run" in out
    result = json.loads(merged.read_text(encoding="utf-8"))
    assert (result["failed"], result["not_run"], result["passed"]) == ([2], [4], False)


def test_a_dask_cluster_runs_the_same_seeds_to_the_same_hashes(tmp_path: Path) -> None:
    code, local = _gate(tmp_path, "local")
    assert code == 0
    code, dask = _gate(tmp_path, "dask", "--scheduler", "local")
    assert code == 0
    assert _hashes(dask) == _hashes(local)


def test_a_failing_run_from_another_machine_is_rerun_here_and_must_hash_the_same(
    tmp_path: Path,
) -> None:
    spec = build_spec("swarm", FIRST, store="tests.fixtures.broken_stores.RefusesWritesStore")
    away = run_seed((spec, str(tmp_path / "worker")))
    assert not away.ok
    shutil.rmtree(away.out_dir)  # as if it ran on a remote worker: its files are not here
    kept = _keep(away, tmp_path / "kept", spec)
    assert kept.error == ""
    assert (Path(kept.out_dir) / "history.csv").exists()
    forged = dataclasses.replace(away, history_hash="0" * 64)
    assert "not reproducible" in _keep(forged, tmp_path / "kept2", spec).error


def test_an_unreachable_scheduler_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("harness.executors.CONNECT_SECONDS", 1)
    assert main(["-q", "gate", "--seeds", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler tcp://127.0.0.1:1: cannot reach it" in capsys.readouterr().err
