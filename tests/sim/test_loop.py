"""The simulator's event loop fails loudly when simulated time stops moving."""

from __future__ import annotations

import asyncio

import pytest
import simpy

from sim.loop import SimEventLoop, SimulationStalled, run_simulation


def test_a_task_that_never_lets_time_move_on_stalls_the_run_instead_of_hanging() -> None:
    env = simpy.Environment()
    loop = SimEventLoop(env)

    async def spin() -> None:
        while True:  # noqa: ASYNC110 (the livelock under test)
            await asyncio.sleep(0)

    loop.create_task(spin())
    with pytest.raises(SimulationStalled, match="simulated time stopped at 0"):
        run_simulation(env, loop, 10.0)
    loop.close()
