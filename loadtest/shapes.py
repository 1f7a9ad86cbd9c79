"""Load shapes for the Locust process (`LoadTestShape`), picked by `TIMERLAB_SHAPE`.

Imported only by `locustfile.py`, inside Locust's own process: importing locust monkey-patches
the process with gevent, which must never happen in pytest, `store/` or the orchestrator.

Every shape reads Locust's common options (`-u` users, `-r` spawn rate, `-t` run time), so the
same command line drives any of them:
- `steady`: ramp at the spawn rate to U users and hold them (the acceptance runs);
- `ramp`: climb linearly to U over 80 % of the run, then hold: where does it start to hurt?
- `spike`: U/4 users, U for the middle fifth of the run (spawned within a second or two),
  then U/4 again: a burst of conversations whose timers all come due together;
- `soak`: like steady, with a gentle ramp (a tenth of the run), meant for long `-t` (hours) to
  show slow growth: tombstones, fallback memory, connections, history size.
"""

from __future__ import annotations

import math
import time

from locust import LoadTestShape

from loadtest.scenarios import SHAPES


class TimerlabShape(LoadTestShape):
    """Base of the shapes: reads `-u`, `-r` and `-t`; the load stops when `-t` is over."""

    abstract = True
    use_common_options = True

    def _options(self) -> tuple[int, float, float]:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        options = self.runner.environment.parsed_options
        assert options is not None
        users = max(1, int(options.num_users or 1))
        rate = float(options.spawn_rate or users)
        return users, rate, float(options.run_time or 60)

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self._options()
        elapsed = time.perf_counter() - self.start_time  # as LoadTestShape.get_run_time
        if elapsed >= run_time:
            return None
        return self.at(elapsed / run_time, users, rate, run_time)

    def at(self, progress: float, users: int, rate: float, run_time: float) -> tuple[int, float]:
        """Users and spawn rate at `progress` (0..1) of the run."""
        raise NotImplementedError


class Steady(TimerlabShape):
    def at(self, progress: float, users: int, rate: float, run_time: float) -> tuple[int, float]:
        return users, rate


class Ramp(TimerlabShape):
    def at(self, progress: float, users: int, rate: float, run_time: float) -> tuple[int, float]:
        climb = 0.8 * run_time
        target = max(1, math.ceil(users * min(1.0, progress / 0.8)))
        return target, max(1.0, users / climb)


class Spike(TimerlabShape):
    def at(self, progress: float, users: int, rate: float, run_time: float) -> tuple[int, float]:
        if 0.4 <= progress < 0.6:
            return users, max(rate, users / 2)
        return max(1, users // 4), max(rate, users / 2)


class Soak(TimerlabShape):
    def at(self, progress: float, users: int, rate: float, run_time: float) -> tuple[int, float]:
        return users, max(1.0, users / (0.1 * run_time))


_BY_NAME: dict[str, type[TimerlabShape]] = {
    "steady": Steady,
    "ramp": Ramp,
    "spike": Spike,
    "soak": Soak,
}
assert tuple(_BY_NAME) == SHAPES, "loadtest.scenarios.SHAPES and the shape classes must agree"


def pick(name: str) -> type[TimerlabShape]:
    """The shape class for `name`; the locustfile binds exactly one, so Locust finds only it."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; use one of {', '.join(SHAPES)}") from None
