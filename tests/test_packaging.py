"""`pip install timerlab` gives a bot the store alone; the harness comes with extras.

Installs the project into a fresh virtual environment from the package registry, as a user
would (about a minute).
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).parents[1]
HARNESS_ONLY = ("locust", "pandas", "matplotlib", "simpy", "fakeredis", "aiohttp")


def test_the_core_install_is_the_store_alone(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert not installed & set(HARNESS_ONLY), installed & set(HARNESS_ONLY)
    assert {"redis", "pyyaml", "structlog", "sortedcontainers"} <= installed
    imports = subprocess.run(
        [str(python), "-c", "from store import RedisTimerStore, create_timer_store; print('ok')"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert imports.stdout.strip() == "ok", imports.stderr
    version = subprocess.run(
        [str(env / "bin" / "timerlab"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.returncode == 0
    assert version.stdout.startswith("timerlab ")
    gate = subprocess.run(
        [str(env / "bin" / "timerlab"), "gate", "--seeds", "1"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert gate.returncode == 2
    assert "pip install 'timerlab[sim]'" in gate.stderr
    assert "Traceback" not in gate.stderr
