"""Service times in the simulator (`sim/costs.py`): Redis's one thread and each pod's CPU
queue the work, so lateness grows with load, and a run stays a pure function of its spec."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.simrun import run_and_check
from harness.sweep import Point, spec_for
from sim.costs import CostsError, Queue, ServiceCosts, reply_bytes
from sim.world import run_world


def test_a_queue_serves_one_thing_at_a_time_in_arrival_order() -> None:
    queue = Queue()
    assert queue.take(1.0, 0.5) == 1.5
    assert queue.take(1.2, 0.5) == 2.0  # waited behind the first
    assert queue.take(5.0, 0.1) == 5.1  # idle meanwhile: starts on arrival
    assert queue.busy == pytest.approx(1.1)


def test_reply_bytes_counts_the_payload() -> None:
    assert reply_bytes("abc") == 3
    assert reply_bytes([b"ab", ["c", 5]]) == 2 + 1 + 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"pod_per_mesage": 0.001}', "unknown cost 'pod_per_mesage'"),
        ('{"pod_per_message": -1}', "pod_per_message must be a number of seconds >= 0"),
        ('{"redis_per_command": "fast"}', "redis_per_command must be a number"),
        ('{"redis_per_command": NaN}', "redis_per_command must be a number"),
        ('{"pod_per_fire": true}', "pod_per_fire must be a number"),
        ("[1, 2]", "must be a JSON object"),
        ("{", "not JSON"),
    ],
)
def test_a_bad_costs_file_names_the_file_and_the_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "costs.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CostsError, match=r"costs\.json") as raised:
        ServiceCosts.load(path)
    assert message in str(raised.value)


def test_a_costs_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"pod_per_message": 0.002, "source": "my pods"}), "utf-8")
    costs = ServiceCosts.load(path)
    assert costs.pod_per_message == 0.002
    assert costs.redis_per_command == ServiceCosts().redis_per_command
    assert costs.source == "my pods"


POINT = Point(pods=1, conversations=60, message_rate=0.5, timeout=5.0, poll_interval=0.5)


def _p99(tmp_path: Path, name: str, costs: ServiceCosts | None) -> tuple[float, float]:
    verdict, _ = run_and_check(spec_for(POINT, 30.0, costs=costs), tmp_path / name)
    assert verdict.ok, verdict.table()
    run = json.loads((tmp_path / name / "run.json").read_text(encoding="utf-8"))
    return verdict.stats["lateness_p99"], run["measured"]["pod_cpu_busy"][0]


def test_a_busy_pod_fires_later_and_still_passes_the_checker(tmp_path: Path) -> None:
    free, idle = _p99(tmp_path, "free", None)
    assert idle == 0.0
    # Each callback takes 40 ms of the pod's CPU: bursts of due timers queue behind it.
    slow = dataclasses.replace(ServiceCosts(), pod_per_fire=0.04, pod_per_message=0.01)
    busy, used = _p99(tmp_path, "busy", slow)
    assert used > 1.0
    assert busy > free + 0.04


def test_a_busy_redis_delays_every_reply(tmp_path: Path) -> None:
    free, _ = _p99(tmp_path, "free", None)
    slow = dataclasses.replace(ServiceCosts(), redis_per_command=0.02)
    busy, _ = _p99(tmp_path, "busy", slow)
    assert busy > free + 0.02
    run = json.loads((tmp_path / "busy" / "run.json").read_text(encoding="utf-8"))
    # Every reply read cost the server its 20 ms (a call cut short at shutdown has none).
    assert run["measured"]["redis_busy"] >= 0.02 * run["measured"]["redis_calls"] * 0.95


def test_a_run_with_costs_is_still_a_pure_function_of_its_spec(tmp_path: Path) -> None:
    spec = spec_for(POINT, 20.0, seed=7, costs=ServiceCosts())
    first = run_world(spec, tmp_path / "a").history_hash
    assert run_world(spec, tmp_path / "b").history_hash == first
