"""A simulated run is a pure function of its scenario and seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from record.history import history_hash
from sim.scenarios import build_spec
from sim.world import run_world

ROOT = Path(__file__).parents[2]


def _hash_in_subprocess(tmp_path: Path, hash_seed: str, name: str) -> str:
    out = tmp_path / name
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "harness.cli", "-q", "replay", "--scenario", "swarm",
         "--seed", "7", "--out", str(out)],
        check=False, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    return history_hash(out / "history.csv")


def test_same_seed_same_history_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    first = _hash_in_subprocess(tmp_path, "0", "a")
    second = _hash_in_subprocess(tmp_path, "12345", "b")
    assert first == second


def test_same_seed_same_history_in_one_process(tmp_path: Path) -> None:
    spec = build_spec("swarm", 11)
    first = run_world(spec, tmp_path / "a").history_hash
    assert run_world(spec, tmp_path / "b").history_hash == first


def test_different_seeds_differ(tmp_path: Path) -> None:
    one = run_world(build_spec("swarm", 1), tmp_path / "a").history_hash
    two = run_world(build_spec("swarm", 2), tmp_path / "b").history_hash
    assert one != two


def test_the_simulation_never_reads_the_wall_clock(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Moving the wall clock changes nothing: the run depends on its seed only."""
    import time

    spec = build_spec("redis-outage", 4)
    before = run_world(spec, tmp_path / "a").history_hash
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400 * 365)
    assert run_world(spec, tmp_path / "b").history_hash == before
