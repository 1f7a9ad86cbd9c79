"""Two deployments sharing one Redis through different `key_prefix` values stay apart.

Same sender ids on both sides, on purpose: whatever one store reads, lists, deletes or claims
must come from its own keys only. The prefix pairs include one prefix that starts with the
other, and the default prefix next to a custom prefix named like it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from servers import Topology
from store import SessionTimer, create_timer_store
from store.redis import RedisTimerStore
from tests.conftest import redis_config, unique_prefix

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
ISOLATED_DB = 7
"""The default-prefix case runs here, away from other tests that share the session's Redis."""


def prefixes(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings that tell the two stores of one case apart."""
    base = unique_prefix()
    if case == "distinct":
        return {"key_prefix": f"{base}a"}, {"key_prefix": f"{base}b"}
    if case == "one_starts_with_the_other":
        return {"key_prefix": base}, {"key_prefix": f"{base}1"}
    # The default layout `{timer:<n>}` next to `{timer:timer:<n>}`.
    return {"key_prefix": None, "db": ISOLATED_DB}, {"key_prefix": "timer", "db": ISOLATED_DB}


@pytest.fixture(params=["distinct", "one_starts_with_the_other", "default_and_timer"])
async def pair(
    request: pytest.FixtureRequest, redis_standalone: Topology
) -> AsyncIterator[tuple[RedisTimerStore, RedisTimerStore]]:
    stores: list[RedisTimerStore] = []
    for overrides in prefixes(request.param):
        config = redis_config(redis_standalone, **overrides)
        if config["key_prefix"] is None:
            del config["key_prefix"]
        store = create_timer_store(config)
        assert isinstance(store, RedisTimerStore)
        stores.append(store)
    if request.param == "default_and_timer":
        port = redis_standalone.nodes[0].port
        with redis.Redis(port=port, db=ISOLATED_DB, socket_timeout=2) as admin:
            admin.flushdb()  # the previous test's default-prefix timers must not leak in
    yield stores[0], stores[1]
    for store in stores:
        await store.aclose()


def senders(timers: list[SessionTimer]) -> dict[str, str | None]:
    return {timer.sender_id: timer.session_id for timer in timers}


async def test_neither_store_sees_the_others_timers(
    pair: tuple[RedisTimerStore, RedisTimerStore],
) -> None:
    a, b = pair
    await a.store_timer("shared", "a-session", T0 + 1)
    await a.store_timer("only-a", "a-session", T0 + 2)
    await b.store_timer("shared", "b-session", T0 + 5)
    await b.store_timer("only-b", "b-session", T0 + 3)

    shared_a, shared_b = await a.get_timer("shared"), await b.get_timer("shared")
    assert (shared_a and shared_a.scheduled_time, shared_b and shared_b.scheduled_time) == (
        T0 + 1,
        T0 + 5,
    )
    assert await a.get_timer("only-b") is None
    assert await b.get_timer("only-a") is None
    assert senders(await a.get_expired_timers(T0 + 10)) == {
        "shared": "a-session",
        "only-a": "a-session",
    }
    assert senders(await b.get_expired_timers(T0 + 10)) == {
        "shared": "b-session",
        "only-b": "b-session",
    }


async def test_deletes_never_reach_the_other_stores_timers(
    pair: tuple[RedisTimerStore, RedisTimerStore],
) -> None:
    a, b = pair
    await a.store_timer("shared", "a", T0 + 1)
    await b.store_timer("shared", "b", T0 + 5)
    await b.store_timer("only-b", "b", T0 + 3)

    assert await a.delete_timer("shared", only_if_scheduled_time=T0 + 5) is False  # b's time
    assert await a.delete_timer("only-b") is False
    assert await a.delete_timer("only-b", only_if_scheduled_time=T0 + 3) is False
    assert await a.delete_timer("shared", only_if_scheduled_time=T0 + 1) is True

    assert await a.get_timer("shared") is None
    assert senders(await b.get_expired_timers(T0 + 10)) == {"shared": "b", "only-b": "b"}
    assert await b.delete_timer("shared") is True
    assert await b.delete_timer("shared") is False


async def test_claims_take_only_the_claimers_own_timers(
    pair: tuple[RedisTimerStore, RedisTimerStore],
) -> None:
    a, b = pair
    for index in range(5):
        await a.store_timer(f"user-{index}", "a", T0 + index)
        await b.store_timer(f"user-{index}", "b", T0 + index)
    await b.store_timer("only-b", "b", T0)

    batch = await a.claim_due(T0 + 10, limit=100, lease_until=None)
    assert sorted(claim.timer.sender_id for claim in batch.claims) == [
        f"user-{i}" for i in range(5)
    ]
    assert {claim.timer.session_id for claim in batch.claims} == {"a"}
    assert batch.remaining_due == 0
    assert len(await b.get_expired_timers(T0 + 10)) == 6

    # A lapsed lease of `b` is re-claimed by `b` only, never by `a`.
    leased = await b.claim_due(T0 + 10, limit=100, lease_until=T0 + 20)
    assert len(leased.claims) == 6
    assert {claim.timer.session_id for claim in leased.claims} == {"b"}
    assert (await a.claim_due(T0 + 30, limit=100, lease_until=T0 + 40)).claims == []
    again = await b.claim_due(T0 + 30, limit=100, lease_until=T0 + 60)
    assert sorted(c.fire_id for c in again.claims) == sorted(c.fire_id for c in leased.claims)
    assert {claim.attempt for claim in again.claims} == {2}
