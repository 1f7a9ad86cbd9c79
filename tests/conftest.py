"""Shared fixtures: real Redis topologies on loopback, and store factories over every backend.

Servers are started once per test session by `servers.topology` (the code `timerlab topology`
uses). When Redis cannot be started, a Redis test skips on a developer machine but FAILS under
`CI=true`: CI must never go green by skipping what it was meant to prove.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog

from servers import (
    ClusterTopology,
    SentinelTopology,
    StandaloneTopology,
    Topology,
    TopologyError,
)
from store import EndpointConfig, InMemoryTimerStore, SessionTimerStore, create_timer_store
from store.base import aclose_store

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_prefixes = itertools.count(1)


def redis_unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"Redis is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(topology: Topology) -> Topology:
    if shutil.which("redis-server") is None:
        redis_unavailable("redis-server is not installed (apt-get install redis-server)")
    try:
        return topology.start()
    except TopologyError as exc:
        redis_unavailable(f"could not start {topology.kind}: {exc}")
        raise


@pytest.fixture(scope="session")
def redis_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneTopology]:
    topology = StandaloneTopology(tmp_path_factory.mktemp("standalone"))
    _start(topology)
    yield topology
    topology.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    topology = ClusterTopology(tmp_path_factory.mktemp("cluster"), masters=3, replicas_per_master=1)
    _start(topology)
    yield topology
    topology.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel"), replicas=1, sentinels=3)
    _start(topology)
    yield topology
    topology.stop()


def unique_prefix() -> str:
    """An alphanumeric key prefix no other test uses, so tests share servers safely."""
    return f"t{os.getpid()}n{next(_prefixes)}"


StoreFactory = Callable[[], SessionTimerStore]

STORE_KINDS = ("memory", "standalone", "cluster", "sentinel", "custom")
REFERENCE_KINDS = ("memory", "standalone", "cluster", "sentinel")


def redis_config(topology: Topology, **overrides: Any) -> dict[str, Any]:
    """The topology's `timer_store` section with a fresh key prefix and no fallback."""
    config = topology.timer_store_config()
    config.update(key_prefix=unique_prefix(), fallback=False)
    config.update(overrides)
    return config


def _factory(kind: str, request: pytest.FixtureRequest) -> StoreFactory:
    """A function that builds stores sharing one backend (memory: one shared instance)."""
    if kind == "memory":
        shared = InMemoryTimerStore()
        return lambda: shared
    if kind == "custom":
        topology: Topology = request.getfixturevalue("redis_standalone")
        port = topology.timer_store_config()["port"]
        section = EndpointConfig(
            type="tests.fixtures.custom_store.SortedSetTimerStore",
            redis_host="127.0.0.1",
            redis_port=port,
            namespace=unique_prefix(),
        )
        return lambda: create_timer_store(section)
    topology = request.getfixturevalue(f"redis_{kind}")
    section = redis_config(topology)
    return lambda: create_timer_store(section)


async def _closing(base: StoreFactory) -> AsyncIterator[StoreFactory]:
    """Yield a factory that remembers what it built, and close all of it afterwards."""
    built: list[SessionTimerStore] = []

    def build() -> SessionTimerStore:
        store = base()
        built.append(store)
        return store

    yield build
    for store in built:
        await aclose_store(store)


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds stores of one kind on one backend; every store built is closed afterwards."""
    async for factory in _closing(_factory(request.param, request)):
        yield factory


@pytest.fixture(params=REFERENCE_KINDS)
async def make_reference_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Like `make_store`, over the reference stores only (they offer the claim path)."""
    async for factory in _closing(_factory(request.param, request)):
        yield factory


@pytest.fixture
async def build_store() -> AsyncIterator[Callable[[dict[str, Any]], SessionTimerStore]]:
    """Builds stores from `timer_store` sections (as `create_timer_store` does); every store
    built is closed afterwards."""
    built: list[SessionTimerStore] = []

    def build(config: dict[str, Any]) -> SessionTimerStore:
        store = create_timer_store(config)
        built.append(store)
        return store

    yield build
    for store in built:
        await aclose_store(store)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Tests that run the CLI configure structlog for the whole process; undo it after each."""
    yield
    structlog.reset_defaults()


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str, float, str], None]:
    """Record a measured figure; all figures are printed at the end of the run."""

    def record(name: str, value: float, unit: str) -> None:
        _FIGURES.append((f"{request.node.name}: {name}", f"{value:.4g} {unit}".strip()))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures tests measured (fallback latency, recovery time, ...)."""
    if _FIGURES:
        terminalreporter.section("measured figures")
        for name, value in _FIGURES:
            terminalreporter.write_line(f"{name:<90} {value}")
