"""The simulator's embedded Redis: fakeredis (with Lua), plus the faults a real one suffers.

State the world can change: `up` (killed, or cut off from every pod), `paused` (SIGSTOP:
commands wait in the socket buffer and run on resume), `extra_latency` (a slow server).
Overlapping faults nest: each one only undoes itself. A restart loses what
its persistence mode would lose: the data are restored from a snapshot taken at the last
point that mode keeps (`none`: nothing; `rdb`: the last save; `aof_everysec`: about a second
before the crash; `aof_always`: everything acknowledged), and the script cache is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import simpy

from sim.costs import Queue, ServiceCosts

Data = dict[bytes, tuple[str, Any]]


@dataclass(frozen=True)
class Snapshot:
    """The data of one Redis process at one moment, as a restart would load them."""

    data: Data = field(default_factory=dict)
    generation: int = 0
    """Which process lifetime they belong to (each restart begins a new one)."""
    taken_at: float = 0.0


class EmbeddedRedis:
    """One in-process Redis server shared by every simulated pod."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.server = fakeredis.FakeServer(version=(7,))
        self.extra_latency = 0.0
        self.costs: ServiceCosts | None = None
        """Set for capacity runs: each reply then waits for the server's one thread."""
        self.thread = Queue()
        self._unreachable = 0
        self._killed = False
        self._pauses = 0
        self._resumed: simpy.Event = env.event()
        self._deferred: list[Callable[[], None]] = []
        self._generation = 0
        self._booted_with = Snapshot()
        """What the running process loaded when it started (empty for the first one)."""
        self._persisted = Snapshot()

    @property
    def up(self) -> bool:
        return not self._killed and self._unreachable == 0

    @property
    def paused(self) -> bool:
        return self._pauses > 0 and not self._killed

    # -- reachability -----------------------------------------------------------------------

    def cut_off(self, cut: bool) -> None:
        """Every pod loses (or regains) its route to Redis; the data are untouched."""
        self._unreachable += 1 if cut else -1

    # -- pause (SIGSTOP / SIGCONT) ----------------------------------------------------------

    def pause(self) -> None:
        self._pauses += 1
        if self._pauses == 1:
            self._resumed = self.env.event()

    def resume(self) -> None:
        """Run what was buffered during the pause, in arrival order, then serve again."""
        self._pauses -= 1
        if self._pauses > 0:
            return
        deferred, self._deferred = self._deferred, []
        if not self._killed:
            for run in deferred:
                run()
        if not self._resumed.triggered:
            self._resumed.succeed()

    @property
    def resumed(self) -> simpy.Event:
        """Fires when the current pause ends."""
        return self._resumed

    def defer(self, run: Callable[[], None]) -> None:
        """Queue bytes that reached a paused server: they execute on resume."""
        self._deferred.append(run)

    # -- kill and restart -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What a restart would bring back if the process died now, as plain data.

        While the process is down that is what it will come back with: nothing is written to
        disk meanwhile.
        """
        if self._killed:
            return self._persisted
        client = self._admin()
        data: Data = {}
        keys: list[bytes] = client.keys("*")  # type: ignore[assignment]
        for key in sorted(keys):
            kind = str(client.type(key), "ascii")  # type: ignore[arg-type]
            if kind == "string":
                data[key] = (kind, client.get(key))
            elif kind == "hash":
                data[key] = (kind, client.hgetall(key))
            elif kind == "zset":
                data[key] = (kind, client.zrange(key, 0, -1, withscores=True))
            elif kind == "list":
                data[key] = (kind, client.lrange(key, 0, -1))
            elif kind == "set":
                data[key] = (kind, sorted(client.smembers(key)))
            else:
                raise ValueError(f"cannot snapshot a {kind} key in the embedded Redis")
        return Snapshot(data, self._generation, self.env.now)

    def kill(self, kept: Snapshot | None) -> Snapshot:
        """The process is gone: connections are refused, buffered requests die with it.

        `kept` is the data its persistence mode kept (None: nothing). Data older than this
        process's own start cannot be kept: it kept at most what it started with (swarm seeds
        2851, 2923: a restart whose kept point falls before the previous restart must not
        bring back what that one lost). Returns what the restart will load.
        """
        if kept is None:
            kept = Snapshot({}, self._generation, self.env.now)
        elif kept.generation != self._generation:
            kept = self._booted_with
        self._killed = True
        self._persisted = kept
        self._deferred = []
        if not self._resumed.triggered:
            self._resumed.succeed()
        return kept

    def restart(self) -> None:
        """Come back with the persisted data and an empty script cache: a new process."""
        client = self._admin()
        client.flushall()
        client.script_flush()
        for key, (kind, value) in self._persisted.data.items():
            if kind == "string":
                client.set(key, value)
            elif kind == "hash":
                client.hset(key, mapping=value)
            elif kind == "zset":
                client.zadd(key, dict(value))
            elif kind == "list":
                client.rpush(key, *value)
            elif kind == "set":
                client.sadd(key, *value)
        self._generation += 1
        self._booted_with = Snapshot(self._persisted.data, self._generation, self.env.now)
        self._killed = False

    def _admin(self) -> fakeredis.FakeRedis:
        """A synchronous client that reaches the server directly (no latency, no faults)."""
        return fakeredis.FakeRedis(server=self.server)
