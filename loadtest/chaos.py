"""The chaos controller: applies a scenario's faults to the live deployment during the load,
and writes each into the history, in the simulator's vocabulary, so one checker judges both.

What it records (pod "" for the world, like `sim.world`):
- Redis kill -9 and restart: `fault_start fault=redis_restart persistence=...`, then at the
  restart `redis_restart` (what the persistence mode may have kept: `kept_until`, see
  `kept_until`) and `fault_end`;
- SIGSTOP / SIGCONT: `fault_start fault=redis_outage mode=pause` ... `fault_end`;
- one pod cut off through its proxy: `fault_start fault=partial_outage target=pod-N` ...;
- a sentinel or cluster master killed: `fault_start fault=redis_outage mode=failover` until the
  promoted replica is reachable (the checker knows outages and restarts, not failovers: for the
  pods a failover is an outage that ends when the new master answers);
- a pod killed with SIGKILL: `fault_start fault=pod_crash target=pod-N`, a `pod_crash` row of
  that pod (its fallback timers are unknown from outside: `fallback_lost=[]`), then
  `fault_end` and the restart, whose `pod_start` the new pod process writes itself.

Window edges are recorded so that the recorded window lies inside the real one: a start is
written just before the fault is applied and an end just before it is lifted (a Redis restart
ends when the new process is spawned: loading its data is part of the recovery under test).
Then no pod can react to a fault before its recorded start, or recover before its recorded
end. Only a failover's end is observed rather than caused: it is polled every 10 ms.

Faults run in a thread of the orchestrator, which owns the processes being hurt; a stop request
lifts the current fault at once, so a run interrupted mid-fault leaves nothing paused or cut.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import redis

from record.faults import Fault
from record.history import HistoryWriter
from servers import ClusterTopology, RedisNode, SentinelTopology, Topology

FAILOVER_TIMEOUT = 30.0
_FAILOVER_POLL = 0.01
REPLICATION_WINDOW = 1.0
"""How far before a master's kill its acknowledged writes may be missing from the promoted
replica. Replication is asynchronous: the replica is fed the write stream as it happens
(milliseconds behind on loopback), and a master learns of a lagging replica only from its
once-a-second REPLCONF ACK; one second is declared at risk, and the checker counts an unfired
write from that second as a declared `failover_lost_write`."""
AOF_EVERYSEC_WINDOW = 2.0
"""How much an appendfsync everysec Redis may lose: writes are postponed up to 2 s while an
fsync is in progress (redis.conf), so the last 2 s before a crash are declared at risk."""


class Deployment(Protocol):
    """What the controller may hurt: the Redis topology, the pods, their proxies."""

    @property
    def topology(self) -> Topology: ...

    def kill_pod(self, index: int) -> int:
        """SIGKILL pod `index` and wait for it; returns the incarnation that died."""
        ...

    def start_pod(self, index: int) -> None: ...

    def cut(self, pod: str) -> None: ...

    def restore(self, pod: str) -> None: ...


class WorldLog:
    """The history file of world events (faults, run start and end), safe across threads."""

    def __init__(self, path: Path) -> None:
        self._writer = HistoryWriter(path)
        self._lock = threading.Lock()

    def record(
        self, kind: str, *, pod: str = "", pod_time: float | None = None, **fields: Any
    ) -> float:
        """Write one event now; returns its time."""
        with self._lock:
            now = time.time()
            self._writer.record(now, pod_time, pod, kind, **fields)
            return now

    def close(self) -> None:
        with self._lock:
            self._writer.close()


class ChaosController:
    """Runs `faults` (times relative to `start(t0)`) in a background thread."""

    def __init__(
        self,
        deployment: Deployment,
        faults: Sequence[Fault],
        world: WorldLog,
        *,
        persistence: str,
        progress: Callable[[str], None],
    ) -> None:
        self.deployment = deployment
        self.faults = tuple(faults)
        self.world = world
        self.persistence = persistence
        self.progress = progress
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="chaos", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Lift the current fault and wait for the thread (at most `timeout` seconds)."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, t0: float) -> None:
        for index, fault in enumerate(self.faults):
            if self._stop.wait(max(0.0, t0 + fault.start - time.time())):
                return
            self.progress(f"chaos: {fault.describe()}")
            try:
                self._apply(index, fault)
            except Exception as exc:  # reported with the verdict, never lost with the thread
                self.errors.append(f"{fault.kind}: {type(exc).__name__}: {exc}")
                self.progress(f"chaos: {fault.kind} failed: {exc}")

    def _apply(self, index: int, fault: Fault) -> None:
        if fault.kind == "redis_outage" and fault.mode == "failover":
            topology = self.deployment.topology
            if isinstance(topology, SentinelTopology):
                self._sentinel_failover(index, fault)
            elif isinstance(topology, ClusterTopology):
                self._cluster_failover(index, fault)
            else:
                raise RuntimeError("a failover needs a sentinel or a cluster topology")
            return
        actions: dict[str, Callable[[int, Fault], None]] = {
            "redis_restart": self._redis_restart,
            "redis_outage": self._redis_hang,
            "partial_outage": self._pod_partition,
            "pod_crash": self._pod_kill,
        }
        if fault.kind not in actions or (fault.kind == "redis_outage" and fault.mode != "pause"):
            raise RuntimeError(f"a load run cannot apply {fault.describe()}")
        actions[fault.kind](index, fault)

    def _hold(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- faults -----------------------------------------------------------------------------

    def _redis_restart(self, index: int, fault: Fault) -> None:
        topology = self.deployment.topology
        node = topology.nodes[0]
        last_save = _last_save(topology, node) if self.persistence == "rdb" else None
        crash = self.world.record(
            "fault_start",
            fault="redis_restart",
            fault_index=index,
            persistence=self.persistence,
            duration=fault.duration,
        )
        topology.kill(node)
        self._hold(fault.duration)
        self.world.record(
            "redis_restart",
            persistence=self.persistence,
            kept_until=kept_until(self.persistence, crash, last_save),
        )
        self.world.record("fault_end", fault="redis_restart", fault_index=index)
        topology.restart(node)  # waits until the data are loaded and PING answers
        self.progress(f"chaos: redis back {time.time() - crash:.2f} s after the kill")

    def _redis_hang(self, index: int, fault: Fault) -> None:
        topology = self.deployment.topology
        node = topology.nodes[0]
        self.world.record(
            "fault_start",
            fault="redis_outage",
            mode="pause",
            fault_index=index,
            duration=fault.duration,
        )
        topology.pause(node)
        try:
            self._hold(fault.duration)
        finally:
            self.world.record("fault_end", fault="redis_outage", fault_index=index)
            topology.resume(node)

    def _pod_partition(self, index: int, fault: Fault) -> None:
        target = f"pod-{fault.pod or 0}"
        self.world.record(
            "fault_start",
            fault="partial_outage",
            target=target,
            fault_index=index,
            duration=fault.duration,
        )
        self.deployment.cut(target)
        try:
            self._hold(fault.duration)
        finally:
            self.world.record("fault_end", fault="partial_outage", target=target, fault_index=index)
            self.deployment.restore(target)

    def _pod_kill(self, index: int, fault: Fault) -> None:
        pod = fault.pod or 0
        target = f"pod-{pod}"
        self.world.record(
            "fault_start",
            fault="pod_crash",
            target=target,
            fault_index=index,
            duration=fault.duration,
        )
        incarnation = self.deployment.kill_pod(pod)
        now = time.time()
        # The pod's own clock at its death: a claim it had in flight may hold leases until
        # now + lease; the checker excuses those timers for that long.
        self.world.record(
            "pod_crash",
            pod=target,
            pod_time=now,
            reason="kill -9",
            fallback_lost=[],
            incarnation=incarnation,
        )
        self._hold(fault.duration)
        self.world.record("fault_end", fault="pod_crash", target=target, fault_index=index)
        self.deployment.start_pod(pod)

    def _sentinel_failover(self, index: int, fault: Fault) -> None:
        topology = self.deployment.topology
        assert isinstance(topology, SentinelTopology)
        old = topology.current_master()
        sentinels = [node for node in topology.nodes if node.role == "sentinel"]
        clients = [topology.client(node, socket_timeout=0.2) for node in sentinels]
        try:
            self._failover(index, topology, old, lambda: _sentinel_promoted(topology, clients, old))
        finally:
            for client in clients:
                client.close()
        self._hold(fault.duration)
        topology.restart(old)  # it comes back as a replica of the new master
        self.progress(f"chaos: {old.name} restarted (sentinels make it a replica)")

    def _cluster_failover(self, index: int, fault: Fault) -> None:
        topology = self.deployment.topology
        assert isinstance(topology, ClusterTopology)
        victim = topology.masters()[0]
        replica = _replica_of(topology, victim)
        with topology.client(replica, socket_timeout=0.2) as client:
            self._failover(index, topology, victim, lambda: _is_master(client, replica))
        self._hold(fault.duration)
        topology.restart(victim)  # it rejoins as a replica of the promoted node
        topology.wait_healthy()
        self.progress(f"chaos: {victim.name} rejoined the cluster")

    def _failover(
        self,
        index: int,
        topology: Topology,
        old: RedisNode,
        promoted: Callable[[], RedisNode | None],
    ) -> None:
        """Kill the master; the outage lasts until `promoted` names a reachable new master."""
        started = self.world.record(
            "fault_start",
            fault="redis_outage",
            mode="failover",
            fault_index=index,
            node=old.name,
            replication_window=REPLICATION_WINDOW,
        )
        topology.kill(old)
        new: RedisNode | None = None
        deadline = time.monotonic() + FAILOVER_TIMEOUT
        while new is None and not self._stop.is_set():
            new = promoted()
            if new is None:
                if time.monotonic() > deadline:
                    self.world.record("fault_end", fault="redis_outage", fault_index=index)
                    raise RuntimeError(f"no failover from {old.name} within {FAILOVER_TIMEOUT:g} s")
                time.sleep(_FAILOVER_POLL)
        ended = self.world.record(
            "fault_end",
            fault="redis_outage",
            fault_index=index,
            new_master=None if new is None else new.name,
        )
        who = "interrupted" if new is None else f"{new.name} promoted"
        self.progress(f"chaos: {who} {ended - started:.2f} s after killing {old.name}")


def kept_until(persistence: str, crash: float, last_save: float | None) -> float | None:
    """The latest write time a restarted Redis surely kept (None: it kept nothing).

    - `none`: nothing survives;
    - `aof_always`: every acknowledged write (fsync before the reply): up to the crash;
    - `aof_everysec`: writes may wait up to 2 s behind an fsync: up to 2 s before the crash;
    - `rdb`: the last snapshot; LASTSAVE has whole seconds and a snapshot reflects its fork,
      slightly before it completed, so one more second is declared at risk.
    Exact kept versions (the simulator's `kept_versions`) cannot be known from outside.
    """
    if persistence == "none":
        return None
    if persistence == "aof_always":
        return crash
    if persistence == "aof_everysec":
        return crash - AOF_EVERYSEC_WINDOW
    return None if last_save is None else min(crash, last_save - 1.0)


def _last_save(topology: Topology, node: RedisNode) -> float | None:
    with topology.client(node, socket_timeout=1.0) as client:
        saved = client.lastsave()
    return saved.timestamp() if saved is not None else None


def _sentinel_promoted(
    topology: SentinelTopology, clients: Sequence[redis.Redis], old: RedisNode
) -> RedisNode | None:
    """The new master, once any sentinel names one that answers as master (pods ask the
    sentinels in turn, so the first sentinel that knows is the first way back)."""
    for client in clients:
        try:
            address: Any = client.sentinel_get_master_addr_by_name(topology.service)
        except (redis.RedisError, OSError):
            continue
        if not address or int(address[1]) == old.port:
            continue
        node = next((n for n in topology.nodes if n.port == int(address[1])), None)
        if node is None:
            continue
        with topology.client(node, socket_timeout=0.2) as conn:
            if _is_master(conn, node) is not None:
                return node
    return None


def _is_master(client: redis.Redis, node: RedisNode) -> RedisNode | None:
    try:
        role: Any = client.role()
    except (redis.RedisError, OSError):
        return None
    return node if role and role[0] == "master" else None


def _replica_of(topology: ClusterTopology, master: RedisNode) -> RedisNode:
    """The replica that will take over `master`'s slots, from CLUSTER NODES."""
    with topology.client(master, socket_timeout=1.0) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    rows = [line.split() for line in text.splitlines() if len(line.split()) >= 8]
    master_id = next(r[0] for r in rows if "myself" in r[2].split(","))
    for row in rows:
        if row[3] == master_id and "slave" in row[2].split(","):
            port = int(row[1].split("@")[0].rsplit(":", 1)[1])
            return next(n for n in topology.nodes if n.port == port)
    raise RuntimeError(f"{master.name} has no replica to fail over to")
