"""The Rasa 3.21 baseline in benchmarks/baselines is faithful: same keys, round trips and flaws.

Round trips are counted by the server, never by wrapping the client: Redis's INFO
`total_reads_processed` / `total_writes_processed` grow by one per request the server read and
per reply batch it wrote, and `commandstats` says which commands ran. A pipeline counts once;
seven sequential HGETs count seven times. The INFO call itself is calibrated away. MONITOR, which
shows the exact arguments, runs apart from the counting, because its feed adds replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from benchmarks.baselines.rasa_manager import RasaTimerManager
from benchmarks.baselines.rasa_store import RasaRedisTimerStore, rasa_key_prefix
from servers import StandaloneTopology
from store.base import SessionTimerStore
from store.endpoint import EndpointConfig
from store.errors import TimerStoreConfigError
from store.looplag import watch_loop
from store.timer import SessionTimer

F = TypeVar("F", bound=Callable[..., Any])


def needs_redis(test: F) -> F:
    """Mark a test that starts or talks to a real redis-server."""
    no_server = shutil.which("redis-server") is None
    marked: F = pytest.mark.redis(
        pytest.mark.skipif(no_server, reason="redis-server not installed")(test)
    )
    return marked


_prefixes = itertools.count(1)
T0 = 1_700_000_000.0


# -- helpers -----------------------------------------------------------------------------------


@dataclass
class Trips:
    """What the server saw between two INFO snapshots, minus the snapshots themselves."""

    reads: int = 0
    writes: int = 0
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def round_trips(self) -> int:
        assert self.reads == self.writes, f"reads {self.reads} != replies {self.writes}"
        return self.writes


class ServerCounter:
    """Counts round trips and command calls on the server through INFO deltas."""

    def __init__(self, admin: redis.Redis) -> None:
        self.admin = admin
        first, second = self._snapshot(), self._snapshot()
        self.overhead = (second[0] - first[0], second[1] - first[1])

    def _snapshot(self) -> tuple[int, int, dict[str, int]]:
        info = self.admin.info("stats", "commandstats")
        calls = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        return int(info["total_reads_processed"]), int(info["total_writes_processed"]), calls

    @contextlib.contextmanager
    def measure(self) -> Iterator[Trips]:
        trips = Trips()
        before = self._snapshot()
        yield trips
        after = self._snapshot()
        trips.reads = after[0] - before[0] - self.overhead[0]
        trips.writes = after[1] - before[1] - self.overhead[1]
        trips.calls = {
            name: count - before[2].get(name, 0)
            for name, count in after[2].items()
            if name != "info" and count != before[2].get(name, 0)
        }


def section(topology: StandaloneTopology, **overrides: Any) -> EndpointConfig:
    """The topology's timer_store section, with a fresh key prefix."""
    config = topology.timer_store_config()
    config.update(key_prefix=f"b{next(_prefixes)}")
    config.update(overrides)
    return EndpointConfig.from_dict(config)


def client_retries(client: redis.Redis) -> int:
    """How many times redis-py retries a failed command on this client."""
    retry = client.get_retry()
    assert retry is not None
    return retry.get_retries()


def monitor_commands(admin: redis.Redis) -> redis.client.Monitor:
    """A MONITOR session (redis-py leaves `monitor` untyped)."""
    monitor: redis.client.Monitor = admin.monitor()  # type: ignore[no-untyped-call]
    return monitor


def fallback_on(manager: RasaTimerManager) -> bool:
    """Read the flag through a call, so each check sees the current value."""
    return manager.fallback_active


async def noop_fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
    """A callback that does nothing."""


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneTopology]:
    """A server of our own, so no other client disturbs the INFO counters."""
    topo = StandaloneTopology(tmp_path_factory.mktemp("baseline")).start()
    yield topo
    topo.stop()


@pytest.fixture
def admin(topology: StandaloneTopology) -> Iterator[redis.Redis]:
    client = topology.client(topology.nodes[0])
    yield client
    client.close()


@pytest.fixture
def counter(admin: redis.Redis) -> ServerCounter:
    return ServerCounter(admin)


@pytest.fixture
async def store(topology: StandaloneTopology) -> AsyncIterator[RasaRedisTimerStore]:
    """A baseline store with Rasa's defaults, its one connection already open."""
    built = RasaRedisTimerStore(section(topology))
    await built.get_timer("warm-up")  # the connection handshake is not part of any count
    yield built
    built.close()


# -- configuration and layout ------------------------------------------------------------------


def test_config_defaults_are_rasas() -> None:
    built = RasaRedisTimerStore(EndpointConfig(type="redis"))
    kwargs = built.client.connection_pool.connection_kwargs
    assert isinstance(built, SessionTimerStore)
    assert (built.host, built.port, built.db) == ("localhost", 6379, 2)
    assert kwargs["socket_timeout"] == 10.0
    assert (built.timers_key, built.data_key) == ("timer:timers", "timer:data")
    built.close()


def test_config_url_alias_key_prefix_and_errors() -> None:
    built = RasaRedisTimerStore(EndpointConfig(url="redis.example", port=7000, db=0))
    assert (built.host, built.port, built.db) == ("redis.example", 7000, 0)
    built.close()
    assert rasa_key_prefix("tenant1") == "tenant1:timer:"
    with pytest.raises(TimerStoreConfigError, match="url"):
        RasaRedisTimerStore(EndpointConfig(url="a", host="b"))
    with pytest.raises(TimerStoreConfigError, match="key_prefix"):
        RasaRedisTimerStore(EndpointConfig(key_prefix="bad:prefix"))


@needs_redis
async def test_layout_is_one_sorted_set_and_one_json_hash(
    store: RasaRedisTimerStore, admin: redis.Redis
) -> None:
    when = T0 + 0.123456789
    await store.store_timer("alice", "s1", when, {"channel": "web"})
    assert store.timers_key == f"{store.prefix}timers"
    assert store.prefix.endswith(":timer:")
    assert admin.zscore(store.timers_key, "alice") == when
    raw = admin.hget(store.data_key, "alice")
    assert isinstance(raw, str)
    assert json.loads(raw) == {
        "sender_id": "alice",
        "session_id": "s1",
        "scheduled_time": when,
        "metadata": {"channel": "web"},
    }


# -- behaves as a SessionTimerStore --------------------------------------------------------------


@needs_redis
async def test_round_trip_replace_delete(store: RasaRedisTimerStore) -> None:
    assert await store.get_timer("bob") is None
    await store.store_timer("bob", "s1", T0 + 10, {"k": 1})
    assert await store.get_timer("bob") == SessionTimer("bob", "s1", T0 + 10, {"k": 1})
    await store.store_timer("bob", "s2", T0 + 20)
    assert await store.get_timer("bob") == SessionTimer("bob", "s2", T0 + 20, {})
    assert await store.get_expired_timers(T0 + 15) == []
    assert await store.delete_timer("bob", only_if_scheduled_time=T0 + 10) is False
    assert await store.delete_timer("bob") is True
    assert await store.delete_timer("bob") is False
    assert await store.get_timer("bob") is None
    store.close()
    store.close()  # closing twice is harmless


@needs_redis
async def test_expiry_boundary_is_inclusive_and_listing_deletes_nothing(
    store: RasaRedisTimerStore,
) -> None:
    await store.store_timer("due", None, T0)
    await store.store_timer("later", None, T0 + 0.5)
    expired = await store.get_expired_timers(T0)
    assert [t.sender_id for t in expired] == ["due"]
    assert [t.sender_id for t in await store.get_expired_timers(T0)] == ["due"]
    assert await store.get_timer("due") is not None


@needs_redis
async def test_one_claim_wins_among_managers_that_listed_the_same_timer(
    store: RasaRedisTimerStore,
) -> None:
    await store.store_timer("carol", "s", T0)
    seen_a = await store.get_expired_timers(T0 + 1)
    seen_b = await store.get_expired_timers(T0 + 1)
    assert seen_a == seen_b
    claims = [await store.delete_timer("carol", t.scheduled_time) for t in seen_a + seen_b]
    assert claims == [True, False]


# -- round trips, counted on the server ----------------------------------------------------------


@needs_redis
async def test_store_timer_is_one_multi_pipeline(
    store: RasaRedisTimerStore, counter: ServerCounter
) -> None:
    with counter.measure() as trips:
        await store.store_timer("dave", "s", T0, {"a": 1})
    assert trips.round_trips == 1
    assert trips.calls == {"multi": 1, "zadd": 1, "hset": 1, "exec": 1}


@needs_redis
async def test_get_timer_is_one_hget(store: RasaRedisTimerStore, counter: ServerCounter) -> None:
    await store.store_timer("erin", "s", T0)
    with counter.measure() as trips:
        await store.get_timer("erin")
    assert trips.round_trips == 1
    assert trips.calls == {"hget": 1}


@needs_redis
async def test_unconditional_delete_is_one_multi_pipeline(
    store: RasaRedisTimerStore, counter: ServerCounter
) -> None:
    await store.store_timer("frank", "s", T0)
    with counter.measure() as trips:
        assert await store.delete_timer("frank") is True
    assert trips.round_trips == 1
    assert trips.calls == {"multi": 1, "zrem": 1, "hdel": 1, "exec": 1}


@needs_redis
async def test_conditional_delete_is_one_lua_call(
    store: RasaRedisTimerStore, counter: ServerCounter, admin: redis.Redis
) -> None:
    await store.store_timer("gina", "s", T0)
    with counter.measure() as miss:
        assert await store.delete_timer("gina", only_if_scheduled_time=T0 + 1) is False
    assert miss.round_trips == 1
    assert miss.calls == {"eval": 1, "zscore": 1}
    with counter.measure() as hit:
        assert await store.delete_timer("gina", only_if_scheduled_time=T0) is True
    assert hit.round_trips == 1
    assert hit.calls == {"eval": 1, "zscore": 1, "zrem": 1, "hdel": 1}
    await store.store_timer("gina", "s", T0)
    with monitor_commands(admin) as monitor:
        assert await store.delete_timer("gina", only_if_scheduled_time=T0) is True
        command = monitor.next_command()["command"]
    # Keys and the sender travel as KEYS/ARGV, not inside the script text.
    assert command.startswith("EVAL ")
    assert f" 2 {store.timers_key} {store.data_key} gina " in command


@needs_redis
async def test_get_expired_timers_is_one_range_plus_one_hget_per_due_timer(
    store: RasaRedisTimerStore, counter: ServerCounter, admin: redis.Redis
) -> None:
    for i in range(7):
        await store.store_timer(f"due{i}", "s", T0 + i)
    for i in range(3):
        await store.store_timer(f"later{i}", "s", T0 + 100 + i)
    cutoff = T0 + 50
    with counter.measure() as trips:
        expired = await store.get_expired_timers(cutoff)
    assert [t.sender_id for t in expired] == [f"due{i}" for i in range(7)]
    assert trips.round_trips == 1 + 7
    assert trips.calls == {"zrangebyscore": 1, "hget": 7}
    with monitor_commands(admin) as monitor:
        await store.get_expired_timers(cutoff)
        commands = [monitor.next_command()["command"] for _ in range(8)]
    # No LIMIT: the whole due set in one reply, whatever its size.
    assert commands[0] == f"ZRANGEBYSCORE {store.timers_key} -inf {cutoff!r}"
    assert commands[1:] == [f"HGET {store.data_key} due{i}" for i in range(7)]
    with counter.measure() as none_due:
        assert await store.get_expired_timers(T0 - 1) == []
    assert none_due.round_trips == 1


@needs_redis
async def test_schedule_is_a_delete_then_a_store(
    store: RasaRedisTimerStore, counter: ServerCounter
) -> None:
    manager = RasaTimerManager(store, noop_fire, clock=lambda: T0)
    with counter.measure() as trips:
        assert await manager.schedule("hank", "s", 30) == T0 + 30
    assert trips.round_trips == 2
    assert trips.calls == {"multi": 2, "zrem": 1, "hdel": 1, "zadd": 1, "hset": 1, "exec": 2}
    assert fallback_on(manager) is False


@needs_redis
async def test_poll_lists_everything_then_claims_one_by_one(
    store: RasaRedisTimerStore, counter: ServerCounter
) -> None:
    manager = RasaTimerManager(store, noop_fire)
    for i in range(3):
        await store.store_timer(f"p{i}", "s", T0 + i)
    await store.store_timer("future", "s", T0 + 1000)
    with counter.measure() as trips:
        fired = await manager.recover(now=T0 + 10)  # startup: everything due at once
    assert [t.sender_id for t in fired] == ["p0", "p1", "p2"]
    assert trips.round_trips == 1 + 3 + 3  # list, fetch each, claim each
    assert trips.calls == {
        "zrangebyscore": 1,
        "hget": 3,
        "eval": 3,
        "zscore": 3,  # the commands inside the claim script are counted too
        "zrem": 3,
        "hdel": 3,
    }
    second = RasaTimerManager(store, noop_fire)
    assert await second.poll_once(now=T0 + 10) == []


@needs_redis
async def test_poll_deletes_before_the_callback(
    store: RasaRedisTimerStore, admin: redis.Redis
) -> None:
    """At-most-once: a pod that dies inside the callback has already lost the expiry."""
    still_stored_at_fire: list[bool] = []

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        still_stored_at_fire.append(bool(admin.hexists(store.data_key, sender_id)))
        raise RuntimeError("the pod dies here")

    await store.store_timer("lena", "s", T0)
    fired = await RasaTimerManager(store, fire).poll_once(now=T0 + 1)
    assert [t.sender_id for t in fired] == ["lena"]
    assert still_stored_at_fire == [False]
    assert await store.get_timer("lena") is None  # nothing left for a retry


# -- the documented flaws ----------------------------------------------------------------------


@needs_redis
async def test_tolerance_confuses_two_instances_armed_within_a_millisecond(
    store: RasaRedisTimerStore,
) -> None:
    """The flaw our reference store fixes by comparing the exact stored score."""
    first = T0 + 30
    await store.store_timer("ivy", "s1", first)
    await store.store_timer("ivy", "s2", first + 0.0004)  # re-armed: a new instance
    assert await store.delete_timer("ivy", only_if_scheduled_time=first) is True
    assert await store.get_timer("ivy") is None  # the newer instance was claimed by the stale one
    await store.store_timer("ivy", "s3", first + 0.002)
    assert await store.delete_timer("ivy", only_if_scheduled_time=first) is False


@needs_redis
async def test_fallback_timers_are_never_moved_back(tmp_path: Path) -> None:
    topo = StandaloneTopology(tmp_path).start()
    node = topo.nodes[0]
    fired: list[str] = []

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        fired.append(sender_id)

    baseline = RasaRedisTimerStore(section(topo, socket_timeout=0.5))
    # Same 10 redis-py retries per call, minus their backoff sleeps (~2-4 s per call against a
    # refused port), only to keep this file fast; the real blocking is measured below.
    baseline.client.set_retry(Retry(NoBackoff(), client_retries(baseline.client)))
    manager = RasaTimerManager(baseline, fire, clock=lambda: T0)
    try:
        await baseline.get_timer("warm-up")
        topo.kill(node)
        started = time.monotonic()
        when = await manager.schedule("jack", "s", 5)
        elapsed = time.monotonic() - started
        assert elapsed >= 2 * (0.1 + 0.2)  # each step tried 3 times, 0.1 s then 0.2 s apart
        assert fallback_on(manager) is True
        assert await manager.fallback.get_timer("jack") == SessionTimer("jack", "s", when, {})

        topo.restart(node)
        assert await manager.poll_once(now=when + 60) == []  # Redis answers: fallback is off
        assert fallback_on(manager) is False
        assert await baseline.get_timer("jack") is None  # never moved back to Redis...
        assert await manager.fallback.get_timer("jack") is not None  # ...stranded in memory
        assert await manager.poll_once(now=when + 3600) == []
        assert fired == []  # and it never fires
    finally:
        baseline.close()
        topo.stop()


@needs_redis
async def test_hung_redis_blocks_the_event_loop(tmp_path: Path) -> None:
    """The sync client inside async methods: nothing else runs until redis-py gives up."""
    topo = StandaloneTopology(tmp_path).start()
    node = topo.nodes[0]
    baseline = RasaRedisTimerStore(section(topo, socket_timeout=0.1))  # default retries kept
    try:
        await baseline.get_timer("warm-up")
        async with watch_loop() as gaps:
            await asyncio.sleep(0.05)
            topo.pause(node)
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await baseline.get_timer("kate")
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.05)
        tries = 1 + client_retries(baseline.client)
        assert elapsed >= tries * 0.1
        assert gaps.largest() >= 0.95 * elapsed  # the loop was frozen for the whole call
    finally:
        topo.resume(node)
        baseline.close()
        topo.stop()
