"""The store a user ships, judged as production runs it: each pod builds its own instance from
`endpoints.yml`, and its own redis-py client reaches the simulated Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate import run_gate
from harness.simrun import run_and_check
from sim.routing import pod_host
from sim.scenarios import build_spec
from store import SessionTimer, SessionTimerStore, load_endpoint_config
from tests.fixtures.sync_store import CountingStore

ROOT = Path(__file__).parents[2]
EXAMPLE = load_endpoint_config(ROOT / "examples" / "endpoints.yml")
NONATOMIC = load_endpoint_config(ROOT / "tests" / "fixtures" / "nonatomic.yml")


def _section(type_: str) -> dict[str, object]:
    return {"type": type_, "host": "localhost", "port": 6379, "socket_timeout": 0.5}


def test_each_pod_builds_its_own_store_and_builds_it_again_when_it_restarts(
    tmp_path: Path,
) -> None:
    CountingStore.built.clear()
    store = _section("tests.fixtures.sync_store.CountingStore")
    verdict, _ = run_and_check(build_spec("pod-crash", 1, store_config=store), tmp_path)
    assert verdict.ok, verdict.table()
    restarts = sum(1 for line in (tmp_path / "history.csv").open() if ",pod_crash," in line)
    assert restarts >= 1
    assert len(CountingStore.built) == 3 + restarts
    assert set(CountingStore.built) == {pod_host(0), pod_host(1), pod_host(2)}


def test_the_example_store_reaches_the_simulated_redis_and_a_restart_loses_its_writes(
    tmp_path: Path,
) -> None:
    assert EXAMPLE is not None
    spec = build_spec("redis-restart-nopersist", 2, store_config=EXAMPLE.as_dict())
    verdict, _ = run_and_check(spec, tmp_path)
    assert verdict.ok, verdict.table()
    assert verdict.declared["restart_lost_write"] > 0
    assert verdict.stats["fires"] > 0
    assert not verdict.info.notes


def test_a_non_atomic_claim_is_caught_as_a_duplicate_and_the_atomic_one_passes() -> None:
    assert NONATOMIC is not None
    assert EXAMPLE is not None
    racy = [build_spec("swarm", seed, store_config=NONATOMIC.as_dict()) for seed in range(1, 41)]
    caught = run_gate(racy, jobs=2, keep_going=False, keep_dir=None, progress=False)
    assert caught.failures, "the non-atomic claim passed 40 seeds"
    assert "duplicate" in caught.failures[0].rules
    atomic = [build_spec("swarm", seed, store_config=EXAMPLE.as_dict()) for seed in range(1, 41)]
    passed = run_gate(atomic, jobs=2, keep_going=True, keep_dir=None, progress=False)
    assert passed.ok, [o.first_violation for o in passed.failures]


def test_a_store_on_a_synchronous_client_runs_and_its_verdict_says_what_is_not_measured(
    tmp_path: Path,
) -> None:
    store = _section("tests.fixtures.sync_store.SyncClientStore")
    verdict, _ = run_and_check(build_spec("redis-outage", 1, store_config=store), tmp_path)
    assert verdict.stats["fires"] > 0
    assert any("synchronous client" in note for note in verdict.info.notes)
    assert "loop_stall" in verdict.table()


def test_the_helpers_are_static_as_in_the_interface_we_implement() -> None:
    timers = [SessionTimer("a", "s", 10.0), SessionTimer("b", "s", 30.0)]
    assert SessionTimerStore._filter_expired(timers, 20.0) == timers[:1]
    assert SessionTimerStore._check_time_for_expired(5.0) == 5.0


@pytest.mark.parametrize("kind", ["in_memory", "no.such.module.Store"])
def test_a_section_that_cannot_be_gated_is_a_usage_error(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    config = tmp_path / "endpoints.yml"
    config.write_text(f"timer_store:\n  type: {kind}\n")
    assert main(["gate", "--seeds", "1", "--store-config", str(config)]) == 2
    assert "Traceback" not in capsys.readouterr().err
