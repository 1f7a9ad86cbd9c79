"""A simulated pod's clock errs exactly as its clock faults say, and no further."""

from __future__ import annotations

import pytest
import simpy

from record.faults import Fault, FaultPlan
from sim.clock import EPOCH, SimClock
from sim.pod import until_next_tick


def _at(env: simpy.Environment, when: float) -> None:
    if when > env.now:
        env.run(until=when)


def test_drift_runs_from_the_fault_start_and_ends_with_it() -> None:
    """Swarm seed 2292: drift counted from time 0 stepped the clock past the tolerance S."""
    env = simpy.Environment()
    clock = SimClock(env)
    _at(env, 41.0)
    clock.skew(0, offset=-0.5, drift=1e-4)
    assert clock.error() == pytest.approx(-0.5)
    _at(env, 51.0)
    assert clock.error() == pytest.approx(-0.5 + 1e-3)
    assert clock.now() == pytest.approx(EPOCH + 51.0 - 0.5 + 1e-3)
    clock.unskew(0)
    assert clock.error() == 0.0


def test_overlapping_faults_add_up_and_each_undoes_itself() -> None:
    env = simpy.Environment()
    clock = SimClock(env)
    clock.skew(0, offset=1.0, drift=0.0)
    _at(env, 5.0)
    clock.skew(1, offset=0.25, drift=-1e-4)
    _at(env, 15.0)
    assert clock.error() == pytest.approx(1.25 - 1e-3)
    clock.unskew(0)
    assert clock.error() == pytest.approx(0.25 - 1e-3)


def test_no_two_pods_ever_differ_by_more_than_the_plans_tolerance() -> None:
    faults = (
        Fault("clock_skew", 10.0, 20.0, offsets=(1.0, -0.5), drifts=(1e-4, -1e-4)),
        Fault("clock_skew", 25.0, 10.0, offsets=(0.3, 0.2), drifts=(-5e-5, 5e-5)),
    )
    tolerance = FaultPlan(faults).max_skew()
    env = simpy.Environment()
    clocks = [SimClock(env), SimClock(env)]
    errors: list[tuple[float, float]] = []
    events = sorted(
        [(f.start, i, True) for i, f in enumerate(faults)]
        + [(f.end, i, False) for i, f in enumerate(faults)]
    )
    for step in range(400):
        now = step / 10
        while events and events[0][0] <= now:
            _, index, start = events.pop(0)
            for pod, clock in enumerate(clocks):
                fault = faults[index]
                if start:
                    clock.skew(index, fault.offsets[pod], fault.drifts[pod])  # type: ignore[index]
                else:
                    clock.unskew(index)
        _at(env, now)
        errors.append((clocks[0].error(), clocks[1].error()))
    every = [error for pair in errors for error in pair]
    assert max(every) - min(every) <= tolerance + 1e-9


@pytest.mark.parametrize(
    ("now", "expected"),
    [(21.5, 0.5), (22.0, 1.0), (21.999999999999996, 1.0), (0.0, 1.0), (3.0000000000000004, 1.0)],
)
def test_the_next_lock_step_tick_is_always_ahead(now: float, expected: float) -> None:
    """Swarm seed 1970: a poll at 21.999999999999996 asked to wait 4e-15 s, which rounds back
    to the same instant, so simulated time never moved on again."""
    delay = until_next_tick(now, 1.0)
    assert delay == pytest.approx(expected, abs=1e-9)
    assert now + delay > now
