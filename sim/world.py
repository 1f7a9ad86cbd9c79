"""`World`: builds a simulated deployment from a `RunSpec`, runs it, records the history.

Data flow: workload and fault processes drive the pods; pods and the world write one
history (`history.csv`) plus the run description (`run.json`); nothing else leaves the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy
from redis.asyncio import ConnectionPool, Redis

from harness.history import HistoryWriter, history_hash
from sim.custom import RemoteStore
from sim.faults import Fault
from sim.loop import AsyncBridge, SimEventLoop, run_simulation
from sim.network import SimConnection
from sim.pod import SimPod, seeded, until_next_tick
from sim.redis_server import EmbeddedRedis, Snapshot
from sim.spec import RunSpec
from sim.workload import Conversation, conversations
from store.base import SessionTimerStore
from store.config import EndpointConfig, load_store_class
from store.events import EventSink
from store.fallback import FallbackTimerStore
from store.redis import RedisTimerStore
from store.redis.clients import no_retry


@dataclass(frozen=True)
class RunResult:
    """Where a run's files are, and what identifies it."""

    history: Path
    run_file: Path
    history_hash: str
    duration: float


class PodContext:
    """What a pod-stack factory (`--store module.factory`) gets to build one pod's store."""

    def __init__(self, world: World, pod: SimPod, sink: EventSink) -> None:
        self.world = world
        self.pod = pod
        self.sink = sink

    def reference_stack(self) -> FallbackTimerStore:
        """The reference stack: `FallbackTimerStore(RedisTimerStore)` on the embedded Redis."""
        return self.world.reference_stack(self.pod, self.sink)


class World:
    """The simulated deployment of one run."""

    def __init__(
        self,
        spec: RunSpec,
        out_dir: Path,
        *,
        stack_factory: Callable[[PodContext], SessionTimerStore] | None = None,
    ) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.env = simpy.Environment()
        self.loop = SimEventLoop(self.env)
        self.bridge = AsyncBridge(self.env, self.loop)
        self.redis = EmbeddedRedis(self.env)
        self.history = HistoryWriter(out_dir / "history.csv")
        self.pods = [SimPod(self, index) for index in range(spec.pods)]
        self._route_rng = self.rng("routing")
        self._shared: SessionTimerStore | None = None
        self._kept = Snapshot()
        """What the Redis restart in progress will load (restarts never overlap)."""
        self._factory: Callable[[PodContext], SessionTimerStore] | None = None
        self._store_class: type | None = None
        self._resolve_store()
        if stack_factory is not None:
            self._factory = stack_factory

    def rng(self, purpose: str) -> random.Random:
        return seeded(self.spec.seed, purpose)

    # -- stores -----------------------------------------------------------------------------

    def _resolve_store(self) -> None:
        if self.spec.store is None:
            return
        module_name, _, name = self.spec.store.rpartition(".")
        import importlib

        target = getattr(importlib.import_module(module_name), name, None)
        if isinstance(target, type):
            self._store_class = load_store_class(self.spec.store)
        elif callable(target):
            self._factory = target
        else:
            raise ValueError(f"--store {self.spec.store}: not a store class or a factory")

    def build_store(self, pod: SimPod, sink: EventSink) -> SessionTimerStore:
        """The store stack of one pod incarnation, reporting to `sink`."""
        if self._factory is not None:
            return self._factory(PodContext(self, pod, sink))
        if self._store_class is not None:
            if self._shared is None:
                config = EndpointConfig(type=self.spec.store)
                self._shared = self._store_class(endpoint_config=config)
            return RemoteStore(self._shared, pod.link, self.spec.socket_timeout)
        return self.reference_stack(pod, sink)

    def reference_stack(self, pod: SimPod, sink: EventSink) -> FallbackTimerStore:
        pool = ConnectionPool(
            connection_class=SimConnection,
            link=pod.link,
            server=self.redis.server,
            socket_timeout=self.spec.socket_timeout,
            decode_responses=True,
        )
        client = Redis(connection_pool=pool, retry=no_retry())
        primary = RedisTimerStore(
            EndpointConfig(type="redis", host="embedded-redis", db=0, buckets=self.spec.buckets),
            client=client,
            rng=self.rng(f"epoch:{pod.index}:{pod.incarnation}"),
            sink=sink,
        )
        return FallbackTimerStore(
            primary,
            clock=pod.clock,
            probe_interval=self.spec.settings.probe_interval,
            sink=sink,
            memory_prefix=f"{pod.name}.{pod.incarnation}",
        )

    # -- running ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Simulate until every conversation is over and the drain has passed."""
        traffic = conversations(
            self.spec.workload, self.rng("workload"), self.rng("workload:payloads")
        )
        for pod in self.pods:
            pod.start()
        last = 0.0
        for conversation in traffic:
            self.env.process(self._conversation(conversation))
            last = max(last, conversation.start + sum(step.delay for step in conversation.steps))
        for index, fault in enumerate(self.spec.plan.faults):
            self.env.process(self._fault(index, fault))
        duration = self.spec.duration(last)
        self._record_world("run_start", scenario=self.spec.scenario, seed=self.spec.seed)
        with _event_loop(self.loop):
            run_simulation(self.env, self.loop, duration)
            self._record_world("run_end")
            self.loop.run_until_complete(self._shutdown())
        self.history.close()
        run_file = self.out_dir / "run.json"
        measured = {"redis_calls": sum(pod.link.calls for pod in self.pods)}
        run_file.write_text(
            json.dumps(
                {"spec": self.spec.to_data(), "duration": duration, "measured": measured}, indent=2
            )
            + "\n"
        )
        history = self.out_dir / "history.csv"
        return RunResult(history, run_file, history_hash(history), duration)

    async def _shutdown(self) -> None:
        """Every pod stops as a pod does on SIGTERM (its fallback drains), then shared stores
        close."""
        await asyncio.gather(*(pod.shutdown() for pod in self.pods))
        if self._shared is not None:
            self._shared.close()

    def _conversation(self, conversation: Conversation) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(conversation.start)
        sticky = self.pods[self._route_rng.randrange(len(self.pods))]
        for step in conversation.steps:
            if step.delay:
                yield self.env.timeout(step.delay)
            if step.at_deadline and self.spec.workload.racing:
                # Land inside the claiming poll: after it has listed the due timer, before it
                # deletes it (one and a half one-way latencies after the lock-step poll starts).
                yield self.env.timeout(
                    until_next_tick(self.env.now, self.spec.settings.poll_interval)
                )
                yield self.env.timeout(1.5 * self.spec.latency)
            pod = self._route(sticky)
            if pod is None:
                self._record_world("message", sender_id=conversation.sender_id, result="no_pod")
                continue
            event = (
                pod.handle_end(conversation.sender_id)
                if step.end
                else pod.handle_message(
                    conversation.sender_id, step.session_id, conversation.timeout, step.metadata
                )
            )
            try:
                yield event
            except (Exception, asyncio.CancelledError) as exc:
                pod.record(
                    "message",
                    sender_id=conversation.sender_id,
                    result="error",
                    error=type(exc).__name__,
                )

    def _route(self, sticky: SimPod) -> SimPod | None:
        if self.spec.workload.routing == "sticky" and sticky.alive:
            return sticky
        alive = [pod for pod in self.pods if pod.alive]
        return alive[self._route_rng.randrange(len(alive))] if alive else None

    # -- faults -----------------------------------------------------------------------------

    def _fault(self, index: int, fault: Fault) -> Generator[simpy.Event, Any, None]:
        snapshot: Snapshot | None = None
        if fault.kind == "redis_restart" and fault.persistence != "none":
            lost = fault.lost_window or 0.0
            yield self.env.timeout(max(0.0, fault.start - lost))
            snapshot = self.redis.snapshot()
            yield self.env.timeout(max(0.0, fault.start - self.env.now))
        else:
            yield self.env.timeout(fault.start)
        self._record_world(
            "fault_start", fault=fault.kind, fault_index=index, **_fault_fields(fault)
        )
        self._apply(index, fault, snapshot, start=True)
        if fault.kind == "crash_mid_claim":
            # The pod dies at its next claim and restarts `duration` later. If no claim comes
            # within `duration` (nothing is due), it dies anyway, so the fault always happens.
            yield self.env.timeout(fault.duration)
            pod = self.pods[fault.pod or 0]
            if pod.alive and pod.crash_after_claim:
                self.crash_and_restart(pod, "crash_mid_claim_without_claim")
            return
        yield self.env.timeout(fault.duration)
        self._apply(index, fault, snapshot, start=False)
        self._record_world("fault_end", fault=fault.kind, fault_index=index)

    def _apply(self, index: int, fault: Fault, snapshot: Snapshot | None, *, start: bool) -> None:
        kind = fault.kind
        if kind == "redis_outage" and fault.mode == "pause":
            self.redis.pause() if start else self.redis.resume()
        elif kind == "redis_outage":
            self.redis.cut_off(start)
        elif kind == "partial_outage":
            self.pods[fault.pod or 0].link.cuts += 1 if start else -1
        elif kind == "redis_restart":
            if start:
                self._kept = self.redis.kill(snapshot)
            else:
                self.redis.restart()
                self._record_world(
                    "redis_restart",
                    persistence=fault.persistence,
                    kept_until=None if snapshot is None else self._kept.taken_at,
                    kept_versions=_bucket_seqs(self._kept),
                )
        elif kind == "pod_crash":
            pod = self.pods[fault.pod or 0]
            pod.crash("pod_crash") if start else pod.start()
        elif kind == "crash_mid_claim":
            pod = self.pods[fault.pod or 0]
            pod.crash_after_claim = True
            pod.restart_after = fault.duration
            pod.crash_fault_index = index
        elif kind == "slow_redis":
            self.redis.extra_latency += (fault.latency or 0.0) * (1 if start else -1)
        elif kind == "clock_skew":
            offsets = fault.offsets or ()
            drifts = fault.drifts or (0.0,) * len(offsets)
            for pod, offset, drift in zip(self.pods, offsets, drifts, strict=False):
                if start:
                    pod.clock.skew(index, offset, drift)
                else:
                    pod.clock.unskew(index)

    def crash_and_restart(self, pod: SimPod, reason: str) -> None:
        """A pod died at a chosen point (crash-mid-claim); boot it again later."""
        pod.crash(reason)

        def reboot() -> Generator[simpy.Event, Any, None]:
            yield self.env.timeout(pod.restart_after)
            self._record_world(
                "fault_end",
                fault="crash_mid_claim",
                fault_index=pod.crash_fault_index,
                target=pod.name,
                how=reason,
            )
            pod.start()

        self.env.process(reboot())

    def _record_world(self, kind: str, **fields: Any) -> None:
        self.history.record(self.env.now, None, "", kind, **fields)


def _fault_fields(fault: Fault) -> dict[str, Any]:
    return {
        key: value
        for key, value in (
            ("target", None if fault.pod is None else f"pod-{fault.pod}"),
            ("mode", fault.mode),
            ("persistence", fault.persistence),
            ("duration", fault.duration),
            ("latency", fault.latency),
            ("offsets", list(fault.offsets) if fault.offsets else None),
        )
        if value is not None
    }


def _bucket_seqs(snapshot: Snapshot) -> dict[str, int]:
    """The version counter of every bucket in a snapshot: what survived a restart, exactly."""
    seqs: dict[str, int] = {}
    for key, (kind, value) in snapshot.data.items():
        name = key.decode()
        if kind == "hash" and name.endswith(":meta") and b"seq" in value:
            seqs[name[: -len(":meta")]] = int(value[b"seq"])
    return seqs


@contextlib.contextmanager
def _event_loop(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Make `loop` the current loop for the run, and close it afterwards."""
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


def run_world(spec: RunSpec, out_dir: Path) -> RunResult:
    """Build and run one simulated deployment; its files land in `out_dir`.

    The simulator drives its own event loop; called from inside a running one (a Jupyter
    kernel), it runs in a thread of its own instead.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return World(spec, out_dir).run()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: World(spec, out_dir).run()).result()
