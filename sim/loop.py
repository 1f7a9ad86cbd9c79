"""One clock for SimPy and asyncio: an event loop whose idle time is simulated time.

The store code is asyncio (redis.asyncio, timeouts, `wait_for`), and pods must interleave at
their `await` points as they would on a network. So every pod's coroutines run as tasks on one
asyncio loop, and that loop's `time()` is SimPy's `env.now`. When asyncio has nothing ready to
run, instead of blocking in `select()` it lets SimPy process its next event, or jumps the clock
to the next asyncio timer (a socket timeout, a `sleep`), whichever comes first. Nothing here
reads the wall clock, so a run depends only on its inputs.

SimPy processes start coroutines with `AsyncBridge.run(coro)`, which returns a SimPy event that
fires when the task ends; coroutines wait for simulated time with plain `asyncio.sleep`.

Every task knows its owner (a pod), inherited by every task it starts, however deep (the
service's fires, the runner's loop, a client's pipeline sends): a pod that crashes cancels all
of them at once, as a killed process stops everything it was doing.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import simpy

T = TypeVar("T")


class TaskOwner:
    """Something whose tasks can all be cancelled at once (a simulated pod).

    Its unfinished tasks are kept in the order they were created, and cancelled in that
    order: the order of their cancellations decides the order of what is recorded next, so it
    must not depend on memory addresses (a set's order does).
    """

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[Any], None] = {}

    def own(self, task: asyncio.Task[Any]) -> None:
        self.tasks[task] = None
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)

    def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()


OWNER: contextvars.ContextVar[TaskOwner | None] = contextvars.ContextVar("sim_owner", default=None)
"""Whose task is running: set by `AsyncBridge.run`, inherited by every task created from it."""


class SimulationStalled(RuntimeError):
    """asyncio waits for something that no SimPy event or timer will ever bring, or spins
    without letting simulated time move on."""


STALL_ITERATIONS = 1_000_000
"""Event-loop iterations at one simulated instant that mean a livelock (a task that keeps
rescheduling itself with no delay), not work: the run fails as a harness error instead of
hanging its gate."""


class _SimSelector(selectors.DefaultSelector):
    """A selector whose waiting advances simulated time instead of blocking."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__()
        self._env = env
        self._frozen_at = -1.0
        self._frozen_for = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._env.now == self._frozen_at:
            self._frozen_for += 1
            if self._frozen_for > STALL_ITERATIONS:
                raise SimulationStalled(
                    f"simulated time stopped at {self._env.now!r}: {STALL_ITERATIONS} loop "
                    "iterations without it moving on"
                )
        else:
            self._frozen_at, self._frozen_for = self._env.now, 0
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
        self.set_task_factory(_owned_task)

    def time(self) -> float:
        return float(self.env.now)


def _owned_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """The loop's task factory: each task joins its owner's set (the creator's, by default)."""
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
    owner = context.get(OWNER) if context is not None else OWNER.get()
    if owner is not None:
        owner.own(task)
    return task


class AsyncBridge:
    """How SimPy processes and asyncio coroutines hand work to each other."""

    def __init__(self, env: simpy.Environment, loop: SimEventLoop) -> None:
        self.env = env
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], *, owner: TaskOwner | None = None) -> simpy.Event:
        """Start `coro` as a task of `owner` now; the returned SimPy event fires with its result.

        A task that raises fails the event; a cancelled task (a crashed pod) fails it with
        `asyncio.CancelledError`, so the waiting SimPy process can tell.
        """
        done = self.env.event()
        context = contextvars.copy_context()
        context.run(OWNER.set, owner)
        task = self.loop.create_task(coro, context=context)

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
