"""One clock for SimPy and asyncio: an event loop whose idle time is simulated time.

The store code is asyncio (redis.asyncio, timeouts, `wait_for`), and pods must interleave at
their `await` points as they would on a network. So every pod's coroutines run as tasks on one
asyncio loop, and that loop's `time()` is SimPy's `env.now`. When asyncio has nothing ready to
run, instead of blocking in `select()` it lets SimPy process its next event, or jumps the clock
to the next asyncio timer (a socket timeout, a `sleep`), whichever comes first. Nothing here
reads the wall clock, so a run depends only on its inputs.

SimPy processes start coroutines with `AsyncBridge.run(coro)`, which returns a SimPy event that
fires when the task ends; coroutines wait for simulated time with plain `asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

import simpy

T = TypeVar("T")


class SimulationStalled(RuntimeError):
    """asyncio waits for something that no SimPy event or timer will ever bring."""


class _SimSelector(selectors.DefaultSelector):
    """A selector whose waiting advances simulated time instead of blocking."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__()
        self._env = env

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)  # the loop's self-pipe; never wait on real file descriptors
        if ready or (timeout is not None and timeout <= 0):
            return ready
        deadline = math.inf if timeout is None else self._env.now + timeout
        upcoming = self._env.peek()
        if upcoming == math.inf and deadline == math.inf:
            raise SimulationStalled("asyncio is waiting, and no simulated event is left")
        if upcoming <= deadline:
            self._env.step()
        elif deadline > self._env.now:
            self._env.run(until=deadline)
        return []


class SimEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock is `env.now`."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(_SimSelector(env))
        self.env = env

    def time(self) -> float:
        return float(self.env.now)


class AsyncBridge:
    """How SimPy processes and asyncio coroutines hand work to each other."""

    def __init__(self, env: simpy.Environment, loop: SimEventLoop) -> None:
        self.env = env
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> simpy.Event:
        """Start `coro` as a task now; the returned SimPy event fires with its result.

        A task that raises fails the event; a cancelled task (a crashed pod) fails it with
        `asyncio.CancelledError`, so the waiting SimPy process can tell.
        """
        done = self.env.event()
        task = self.loop.create_task(coro, name=name)

        def finished(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                done.fail(asyncio.CancelledError())  # type: ignore[arg-type]
                done.defused = True
            elif task.exception() is not None:
                done.fail(task.exception())  # type: ignore[arg-type]
            else:
                done.succeed(task.result())

        task.add_done_callback(finished)
        done.task = task  # type: ignore[attr-defined]
        return done


def run_simulation(env: simpy.Environment, loop: SimEventLoop, until: float) -> None:
    """Run SimPy processes and asyncio tasks together until simulated time `until`."""
    finished = loop.create_future()
    end = env.timeout(until - env.now)

    def finish(_: simpy.Event) -> None:
        if not finished.done():
            finished.set_result(None)

    end.callbacks.append(finish)
    loop.run_until_complete(finished)
