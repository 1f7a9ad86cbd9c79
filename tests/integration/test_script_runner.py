"""The Redis store's script runner on a real server: the direct lane and the batches.

A call with nothing queued takes the direct lane (`store/redis/scripts.py`): the caller's task
writes the packed EVALSHA on a connection the runner keeps, and reads the reply. These tests
hold the lane to what makes it safe, with the redis-py version this project pins: it really
skips redis-py's send path, it never reads another call's reply, it survives a flushed script
cache and a closed socket, and it goes back to the pool on close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from servers import StandaloneTopology
from store.endpoint import EndpointConfig
from store.redis import RedisTimerStore
from tests.conftest import redis_config

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0


@pytest.fixture
async def store(redis_standalone: StandaloneTopology) -> AsyncIterator[RedisTimerStore]:
    built = RedisTimerStore(EndpointConfig.from_dict(redis_config(redis_standalone)))
    yield built
    await built.aclose()


def _runner(store: RedisTimerStore) -> Any:
    bound = store._bound
    assert bound is not None, "the store has not made a call yet"
    return bound.scripts.runner


def _admin(topology: StandaloneTopology) -> Any:
    return topology.client(topology.nodes[0])


async def test_a_lone_call_is_written_straight_on_the_lane(store: RedisTimerStore) -> None:
    await store.store_timer("warm", "s", T0)
    lane = _runner(store)._lane
    assert isinstance(lane, redis.asyncio.Connection)

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the direct lane went through send_packed_command")

    lane.send_packed_command = refuse  # on the instance: the class's method stays the plain one
    for index in range(20):
        await store.store_timer(f"user-{index}", "s", T0 + index, {"n": index})
        assert await store.delete_timer(f"user-{index}", T0 + index) is True
    assert _runner(store)._lane is lane, "one connection carried every lone call"


async def test_calls_of_one_tick_share_a_pipeline_and_get_their_own_replies(
    store: RedisTimerStore,
) -> None:
    senders = [f"user-{index}" for index in range(50)]
    await asyncio.gather(
        *(store.store_timer(s, f"session-{s}", T0 + i) for i, s in enumerate(senders))
    )
    timers = await asyncio.gather(*(store.get_timer(sender) for sender in senders))
    for index, (sender, timer) in enumerate(zip(senders, timers, strict=True)):
        assert timer is not None
        assert (timer.sender_id, timer.session_id) == (sender, f"session-{sender}")
        assert timer.scheduled_time == T0 + index


async def test_a_cancelled_call_never_leaves_its_reply_for_the_next(
    store: RedisTimerStore, redis_standalone: StandaloneTopology
) -> None:
    await store.store_timer("kept", "s", T0 + 1, {"who": "kept"})
    with _admin(redis_standalone) as admin:
        admin.client_pause(400, all=False)  # scripts wait; their replies come after the pause
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.store_timer("late", "s", T0 + 2), 0.1)
    await asyncio.sleep(0.5)  # the paused write's reply, if anyone still listened, is back now
    kept = await store.get_timer("kept")
    assert kept is not None
    assert (kept.sender_id, kept.scheduled_time, kept.metadata) == ("kept", T0 + 1, {"who": "kept"})
    assert await store.delete_timer("kept", T0 + 1) is True


async def test_a_flushed_script_cache_is_reloaded_on_the_lane(
    store: RedisTimerStore, redis_standalone: StandaloneTopology
) -> None:
    await store.store_timer("user-1", "s", T0)
    with _admin(redis_standalone) as admin:
        admin.script_flush()
    await store.store_timer("user-2", "s", T0 + 1)
    assert [timer.sender_id for timer in await store.get_expired_timers(T0 + 1)] == [
        "user-1",
        "user-2",
    ]


async def test_a_lane_closed_by_the_server_reconnects_for_the_next_call(
    store: RedisTimerStore, redis_standalone: StandaloneTopology
) -> None:
    await store.store_timer("user-1", "s", T0)
    with _admin(redis_standalone) as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    await asyncio.sleep(0.1)  # the loop sees the end of the stream
    await store.store_timer("user-2", "s", T0 + 1)  # no error: the lane noticed and redialled
    assert await store.get_timer("user-2") is not None


async def test_close_gives_the_lane_back_to_an_injected_client(
    redis_standalone: StandaloneTopology,
) -> None:
    config = redis_config(redis_standalone)
    client = redis.asyncio.Redis(
        host=config["host"], port=config["port"], decode_responses=True, socket_timeout=5.0
    )
    store = RedisTimerStore(EndpointConfig.from_dict(config), client=client)
    await store.store_timer("user-1", "s", T0)
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 1  # the lane
    await store.aclose()
    assert not pool._in_use_connections
    assert await client.ping() is True  # the client is still its owner's
    await client.aclose()
