"""The timer-store contract, written once and run against every store.

Each test names one sentence of `SessionTimerStore`'s contract (see `store/base.py`) and checks
it on: the in-memory store, Redis standalone, a 3-master cluster, a sentinel group, and a
custom store loaded by module path. `make_store` builds stores that share one backend, like
the pods of one deployment.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import pytest

from store import SessionTimer, SessionTimerStore
from tests.conftest import StoreFactory

T0 = 1_700_000_000.0


async def test_round_trip_keeps_every_field_exactly(make_store: StoreFactory) -> None:
    store = make_store()
    metadata = {"channel": "web", "nested": {"list": [1, 2.5, None, "é"], "flag": True}}
    when = T0 + 0.123456789
    await store.store_timer("user-1", "session-9", when, metadata)
    timer = await store.get_timer("user-1")
    assert timer == SessionTimer("user-1", "session-9", when, metadata)
    assert timer is not None
    assert timer.scheduled_time.hex() == when.hex()


async def test_round_trip_without_session_or_metadata(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store_timer("user-2", None, T0)
    assert await store.get_timer("user-2") == SessionTimer("user-2", None, T0, {})


async def test_unusual_but_valid_ids_round_trip(make_store: StoreFactory) -> None:
    store = make_store()
    senders = ["{tag}", "a:b:c", "}{", "emoji-😀", "spaces and tabs are fine"]
    for index, sender in enumerate(senders):
        await store.store_timer(sender, f"s{index}", T0 + index)
    for index, sender in enumerate(senders):
        assert await store.get_timer(sender) == SessionTimer(sender, f"s{index}", T0 + index)


async def test_get_timer_of_unknown_sender_is_none(make_store: StoreFactory) -> None:
    assert await make_store().get_timer("nobody") is None


async def test_store_replaces_the_conversation_timer(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store_timer("user-1", "s1", T0 + 10, {"n": 1})
    await store.store_timer("user-1", "s2", T0 + 5, {"n": 2})
    assert await store.get_timer("user-1") == SessionTimer("user-1", "s2", T0 + 5, {"n": 2})
    expired = await store.get_expired_timers(T0 + 100)
    assert [t.sender_id for t in expired] == ["user-1"]
    assert expired[0].session_id == "s2"


async def test_conditional_delete_needs_the_exact_scheduled_time(make_store: StoreFactory) -> None:
    store = make_store()
    when = T0 + 0.5
    await store.store_timer("user-1", "s", when)
    just_before = math.nextafter(when, 0)
    assert await store.delete_timer("user-1", only_if_scheduled_time=just_before) is False
    assert await store.delete_timer("user-1", only_if_scheduled_time=when + 0.001) is False
    assert await store.get_timer("user-1") is not None
    assert await store.delete_timer("user-1", only_if_scheduled_time=when) is True
    assert await store.get_timer("user-1") is None
    assert await store.delete_timer("user-1", only_if_scheduled_time=when) is False


async def test_instances_within_one_millisecond_are_never_confused(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    first = T0 + 0.0001
    second = T0 + 0.0004  # same millisecond: Rasa's 0.001 s tolerance would match both
    await store.store_timer("user-1", "s", first)
    await store.store_timer("user-1", "s", second)
    assert await store.delete_timer("user-1", only_if_scheduled_time=first) is False
    assert (await store.get_timer("user-1")) == SessionTimer("user-1", "s", second)


async def test_unconditional_delete_reports_whether_a_timer_existed(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.store_timer("user-1", "s", T0)
    assert await store.delete_timer("user-1") is True
    assert await store.get_timer("user-1") is None
    assert await store.delete_timer("user-1") is False
    assert await store.delete_timer("never-armed") is False


async def test_expiry_boundary_is_inclusive(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store_timer("at", "s", T0)
    await store.store_timer("after", "s", math.nextafter(T0, math.inf))
    await store.store_timer("before", "s", T0 - 1)
    expired = await store.get_expired_timers(T0)
    assert sorted(t.sender_id for t in expired) == ["at", "before"]
    assert await store.get_expired_timers(T0 - 2) == []


async def test_get_expired_timers_does_not_delete(make_store: StoreFactory) -> None:
    store = make_store()
    for index in range(5):
        await store.store_timer(f"user-{index}", "s", T0 + index)
    first = await store.get_expired_timers(T0 + 10)
    second = await store.get_expired_timers(T0 + 10)
    assert sorted(t.sender_id for t in first) == [f"user-{i}" for i in range(5)]
    assert sorted(first, key=lambda t: t.sender_id) == sorted(second, key=lambda t: t.sender_id)
    for index in range(5):
        assert await store.get_timer(f"user-{index}") is not None


async def test_default_cutoff_is_now(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store_timer("past", "s", time.time() - 60)
    await store.store_timer("future", "s", time.time() + 3600)
    assert [t.sender_id for t in await store.get_expired_timers()] == ["past"]


async def test_helpers_check_time_and_filter(make_store: StoreFactory) -> None:
    store = make_store()
    assert store._check_time_for_expired(123.0) == 123.0
    assert abs(store._check_time_for_expired(None) - time.time()) < 5
    timers = [SessionTimer("a", None, 1.0), SessionTimer("b", None, 2.0)]
    assert store._filter_expired(timers, 1.0) == [timers[0]]


async def test_concurrent_claimers_claim_each_timer_exactly_once(
    make_store: StoreFactory,
) -> None:
    """8 pods race over 1,000 expired timers with the documented claim (conditional delete)."""
    writer = make_store()
    for start in range(0, 1000, 100):
        await asyncio.gather(
            *(writer.store_timer(f"c{i}", "s", T0 + i / 1000) for i in range(start, start + 100))
        )
    claimed: Counter[str] = Counter()

    async def claimer(store: SessionTimerStore) -> None:
        for timer in await store.get_expired_timers(T0 + 10):
            if await store.delete_timer(timer.sender_id, timer.scheduled_time):
                claimed[timer.sender_id] += 1

    await asyncio.gather(*(claimer(make_store()) for _ in range(8)))
    assert len(claimed) == 1000
    assert set(claimed.values()) == {1}
    assert await writer.get_expired_timers(T0 + 10) == []


async def test_close_is_safe_twice_and_after_the_loop(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store_timer("user-1", "s", T0)
    store.close()
    store.close()


def test_close_after_the_event_loop_has_ended(make_store: StoreFactory) -> None:
    """Rasa calls the synchronous close() after its loop is gone; that must not raise."""
    store = make_store()
    asyncio.run(store.store_timer("user-1", "s", T0))
    store.close()
    store.close()


@pytest.mark.parametrize(
    ("sender", "when", "metadata", "error"),
    [
        ("", T0, None, ValueError),
        (42, T0, None, TypeError),
        ("ok", float("nan"), None, ValueError),
        ("ok", float("inf"), None, ValueError),
        ("ok", "soon", None, TypeError),
        ("ok", T0, {"bad": object()}, TypeError),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    make_reference_store: StoreFactory,
    sender: object,
    when: object,
    metadata: object,
    error: type[Exception],
) -> None:
    store = make_reference_store()
    with pytest.raises(error):
        await store.store_timer(sender, "s", when, metadata)  # type: ignore[arg-type]
    assert await store.get_expired_timers(T0 + 10**9) == []
    await store.store_timer("ok", "s", T0)  # the store stays usable
    assert await store.get_timer("ok") is not None
