"""What work costs in simulated time: Redis's one thread, and each pod's CPU.

Without costs a command runs the instant it arrives and a pod spends nothing on a message, a
claim or a callback, so load never queues and a capacity sweep cannot find the load at which
lateness takes off (the knee). With `ServiceCosts` in the `RunSpec`:

- Redis serves requests one at a time in arrival order. Each reply costs `redis_per_command`
  plus `redis_per_reply_byte` for every byte it returns (a scan of 10,000 due timers costs
  what its reply carries). A request that finds the server busy waits in its queue.
- Each pod has one CPU, also first come first served: a message costs `pod_per_message`,
  every Redis call `pod_per_call` to encode and send, every reply byte `pod_per_reply_byte`
  to parse, and every conversation-inactive callback `pod_per_fire`.

The store code and its Lua still run for real (on the embedded Redis); costs only delay
replies and tasks, so no run gets faster by skipping work. Commands take effect in arrival
order, as on a real single-threaded server; only their replies wait for the queue.

The correctness gate runs without costs (its bounds are about faults, not capacity);
`timerlab sweep` runs with them: `--costs FILE`, else the `costs.json` that `timerlab bench`
wrote beside its results (a store call's client CPU and Redis time, measured by the dropin
row), else these defaults. Measured on the project's 2-core machine, 2026-11-30: a store call
costs ~108 µs of client CPU and ~16 µs of Redis (`timerlab bench dropin`); per reply byte,
the expiry row's server and client time over its reply size (~25 ns each). A pod's cost per
message and per callback depend on the application around the store (HTTP server, NLU, the
callback's own work): the defaults are an assumption, not a measurement, and a user gives
their own in a costs file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CostsError(ValueError):
    """A costs file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ServiceCosts:
    """Seconds each piece of work takes (see the module docstring)."""

    redis_per_command: float = 16e-6
    redis_per_reply_byte: float = 25e-9
    pod_per_call: float = 108e-6
    pod_per_reply_byte: float = 25e-9
    pod_per_message: float = 400e-6
    pod_per_fire: float = 300e-6
    source: str = "defaults measured on the project's machine (sim/costs.py)"

    @classmethod
    def load(cls, path: Path) -> ServiceCosts:
        """A JSON object of any of the fields (seconds); the others keep their defaults."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CostsError(f"{path}: cannot read it ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise CostsError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CostsError(f"{path}: must be a JSON object of costs in seconds")
        known = {field.name for field in dataclasses.fields(cls)} - {"source"}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "source":
                continue
            if name not in known:
                raise CostsError(
                    f"{path}: unknown cost {name!r}; known: {', '.join(sorted(known))}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise CostsError(f"{path}: {name} must be a number of seconds >= 0, not {value!r}")
            values[name] = float(value)
        return cls(**values, source=str(data.get("source", path)))

    def to_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Queue:
    """One server that does one thing at a time, first come first served (a CPU, or Redis's
    single thread), in simulated time."""

    def __init__(self) -> None:
        self.free_at = 0.0
        self.busy = 0.0
        """Seconds of work done so far (utilisation = busy / elapsed)."""

    def take(self, now: float, seconds: float) -> float:
        """Queue `seconds` of work arriving at `now`; when it is done."""
        self.free_at = max(now, self.free_at) + seconds
        self.busy += seconds
        return self.free_at

    async def use(self, seconds: float) -> None:
        """Wait for the work to be done, in the calling task."""
        loop = asyncio.get_running_loop()
        done = self.take(loop.time(), seconds)
        await asyncio.sleep(done - loop.time())


def reply_bytes(reply: Any) -> int:
    """About the bytes a reply carries on the wire (its payload, without framing)."""
    if isinstance(reply, str | bytes):
        return len(reply)
    if isinstance(reply, list | tuple):
        return sum(reply_bytes(item) for item in reply)
    return 8
