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

from record.faults import Fault
from record.history import HistoryWriter, history_hash
from record.pod_events import message_failed
from sim.custom import RemoteStore, resolve_store_target
from sim.loop import AsyncBridge, SimEventLoop, run_simulation
from sim.pod import SimPod, seeded, until_next_tick
from sim.redis_server import EmbeddedRedis, Snapshot
from sim.routing import SIM_PORT, SYNC_NOTE, Route, pod_host, pod_section, routed
from sim.spec import RunSpec
from sim.workload import Conversation, conversations
from store.base import SessionTimerStore
from store.endpoint import EndpointConfig
from store.events import EventSink
from store.factory import create_timer_store
from store.fallback import FallbackTimerStore
from store.options import ServiceSettings
from store.redis import RedisTimerStore


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
        stack = self.world.reference_stack(self.pod, self.sink)
        assert isinstance(stack, FallbackTimerStore)
        return stack


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
        self.redis.costs = spec.costs
        self.history = HistoryWriter(out_dir / "history.csv")
        self.pods = [SimPod(self, index) for index in range(spec.pods)]
        self._route_rng = self.rng("routing")
        self._shared: SessionTimerStore | None = None
        self._kept = Snapshot()
        """What the Redis restart in progress will load (restarts never overlap)."""
        self._factory: Callable[[PodContext], SessionTimerStore] | None = None
        self._store_class: type | None = None
        self.notes: list[str] = []
        """What a reader of the verdict must know about how the store was run."""
        self._resolve_store()
        if stack_factory is not None:
            self._factory = stack_factory

    def rng(self, purpose: str) -> random.Random:
        return seeded(self.spec.seed, purpose)

    # -- stores -----------------------------------------------------------------------------

    def _resolve_store(self) -> None:
        if self.spec.store is not None:
            target = resolve_store_target(self.spec.store)
            if isinstance(target, type):
                self._store_class = target
                self.notes.append(
                    f"--store {self.spec.store}: one shared instance stood for the store's "
                    "backend; its own client was not on the simulated network (gate a store "
                    "on Redis with --store-config, as each pod builds it in production)"
                )
            else:
                self._factory = target

    def build_store(self, pod: SimPod, sink: EventSink) -> SessionTimerStore:
        """The store stack of one pod incarnation, reporting to `sink`."""
        if self._factory is not None:
            return self._factory(PodContext(self, pod, sink))
        if self._store_class is not None:
            if self._shared is None:
                config = EndpointConfig(type=self.spec.store)
                self._shared = self._store_class(endpoint_config=config)
            return RemoteStore(self._shared, pod.link, self.spec.socket_timeout)
        if self.spec.store_config is not None:
            return self.configured_store(pod, sink)
        return self.reference_stack(pod, sink)

    def configured_store(self, pod: SimPod, sink: EventSink) -> SessionTimerStore:
        """The store a pod builds from the run's `timer_store` section, as production does,
        its connection settings pointed at this pod's simulated network."""
        section = pod_section(self.spec.store_config or {}, pod.index)
        config = EndpointConfig.from_dict(section)
        if config.type == "redis":
            return self.reference_stack(pod, sink, section)
        return create_timer_store(config)

    def reference_stack(
        self, pod: SimPod, sink: EventSink, section: dict[str, Any] | None = None
    ) -> SessionTimerStore:
        """`FallbackTimerStore(RedisTimerStore)` as production builds it from `section` (by
        default the run's settings), on this pod's simulated network. Its ids come from the
        run's seed and its fallback dates outages by the pod's clock."""
        section = section or {
            "type": "redis",
            "host": pod_host(pod.index),
            "port": SIM_PORT,
            "db": 0,
            "buckets": self.spec.buckets,
            "socket_timeout": self.spec.socket_timeout,
            "socket_connect_timeout": self.spec.socket_timeout,
        }
        config = EndpointConfig.from_dict(section)
        primary = RedisTimerStore(
            config, rng=self.rng(f"epoch:{pod.index}:{pod.incarnation}"), sink=sink
        )
        if not ServiceSettings.from_mapping(config.kwargs).fallback:
            return primary
        return FallbackTimerStore(
            primary,
            clock=pod.clock,
            probe_interval=self.spec.settings.probe_interval,
            sink=sink,
            memory_prefix=f"{pod.name}.{pod.incarnation}",
        )

    def _routes(self) -> dict[str, Route]:
        def sync_client() -> None:
            if SYNC_NOTE not in self.notes:
                self.notes.append(SYNC_NOTE)

        return {
            pod_host(pod.index): Route(pod.link, self.redis.server, sync_client)
            for pod in self.pods
        }

    # -- running ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Simulate until every conversation is over and the drain has passed."""
        traffic = conversations(
            self.spec.workload, self.rng("workload"), self.rng("workload:payloads")
        )
        with routed(self._routes()), _event_loop(self.loop), _seeded_random(self.spec.seed):
            for pod in self.pods:
                pod.start()
            last = 0.0
            for conversation in traffic:
                self.env.process(self._conversation(conversation))
                steps = sum(step.delay for step in conversation.steps)
                last = max(last, conversation.start + steps)
            for index, fault in enumerate(self.spec.plan.faults):
                self.env.process(self._fault(index, fault))
            duration = self.spec.duration(last)
            self._record_world("run_start", scenario=self.spec.scenario, seed=self.spec.seed)
            run_simulation(self.env, self.loop, duration)
            self._record_world("run_end")
            self.loop.run_until_complete(self._shutdown())
        self.history.close()
        run_file = self.out_dir / "run.json"
        data = {
            "spec": self.spec.to_data(),
            "duration": duration,
            "measured": {
                "redis_calls": sum(pod.link.calls for pod in self.pods),
                "redis_scripts": sum(pod.link.scripts for pod in self.pods),
                "redis_busy": self.redis.thread.busy,
                "pod_cpu_busy": [pod.link.cpu.busy for pod in self.pods],
            },
            "notes": self.notes,
        }
        run_file.write_text(json.dumps(data, indent=2) + "\n")
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
                message_failed(pod.record, conversation.sender_id, type(exc).__name__)

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
def _seeded_random(seed: int) -> Iterator[None]:
    """The `random` module seeded from the run's seed while the run lasts.

    timerlab draws from streams of its own; but a store's client may draw from the module
    (redis-py jitters its retry backoff with it), and its draws decide simulated timing: a run
    must stay a pure function of its seed, whatever store it runs. The caller's random state
    is put back afterwards.
    """
    state = random.getstate()
    random.seed(f"{seed}:module-random")
    try:
        yield
    finally:
        random.setstate(state)


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
