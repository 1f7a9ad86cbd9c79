"""The layer contract (`[tool.importlinter]` in pyproject.toml) holds, and would catch a breach.

Checked on a copy of the packages, so a breach planted to prove the contract works never
touches the project.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("store", "record", "servers", "sim", "loadtest", "benchmarks", "harness")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_the_project_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "breach", "reported"),
    [
        ("sim/spec.py", "import harness.cli", "sim is not allowed to import harness"),
        ("loadtest/scenarios.py", "import harness.checker", "loadtest is not allowed to import"),
        ("store/timer.py", "import pandas", "store is not allowed to import pandas"),
        ("store/service.py", "import prometheus_client", "prometheus_client"),
        ("record/history.py", "import sim.world", "record is not allowed to import sim"),
    ],
)
def test_a_breach_of_the_layers_fails(
    module: str, breach: str, reported: str, tmp_path: Path
) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{breach}  # planted\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert reported in result.stdout, result.stdout[-3000:]
