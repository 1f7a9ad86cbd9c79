"""`timerlab load` runs the store a user ships in every pod, and judges what users feel.

Real redis-server, pods, proxies and Locust. A store that calls a synchronous Redis client
inside its async methods freezes every pod's event loop while Redis hangs: rule loop_stall.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.load import LoadResult, judge_load
from loadtest.run import LoadOptions, run_load
from record.history import read_history
from store import load_endpoint_config
from tests.conftest import redis_unavailable

pytestmark = pytest.mark.redis
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _redis_installed() -> None:
    if shutil.which("redis-server") is None:
        redis_unavailable("redis-server is not installed (apt-get install redis-server)")


def _load(tmp_path: Path, scenario: str, store: dict[str, object] | None) -> LoadResult:
    options = LoadOptions(
        scenario=scenario, users=10, duration=15, pods=2, out=tmp_path / "load",
        store_section=store,
    )  # fmt: skip
    return judge_load(run_load(options, progress=lambda _: None))


def test_the_example_store_runs_in_every_pod_through_a_redis_restart(tmp_path: Path) -> None:
    config = load_endpoint_config(ROOT / "examples" / "endpoints.yml")
    assert config is not None
    result = _load(tmp_path, "redis-restart", config.as_dict())
    verdict = result.verdict
    assert verdict.ok, verdict.table()
    assert verdict.stats["fires"] > 0
    assert verdict.stats["loop_lag_max"] < 1.0
    history = read_history(tmp_path / "load" / "history.csv")
    starts = history[history["kind"] == "pod_start"]
    assert set(starts["pod"]) == {"pod-0", "pod-1"}
    assert all('"delivery": "at_most_once"' in d for d in starts["detail"])
    assert (history["kind"] == "loop_lag").sum() > 20


def test_a_store_on_a_synchronous_client_fails_a_redis_hang_with_loop_stall(
    tmp_path: Path,
) -> None:
    store = {"type": "tests.fixtures.sync_store.SyncClientStore", "socket_timeout": 10}
    result = _load(tmp_path, "redis-hang", store)
    verdict = result.verdict
    assert verdict.rules()["loop_stall"] >= 1, verdict.table()
    assert verdict.stats["loop_lag_max"] > 2.0


def test_the_reference_store_passes_the_same_hang(tmp_path: Path) -> None:
    result = _load(tmp_path, "redis-hang", None)
    verdict = result.verdict
    assert verdict.ok, verdict.table()
    assert verdict.stats["loop_lag_max"] < 1.0
