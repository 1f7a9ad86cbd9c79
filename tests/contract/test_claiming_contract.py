"""The batch paths of the reference stores (`store.capabilities`), on every backend.

These are what `TimerService` uses with the reference stores: versioned writes, batch claims
under a lease, re-claims with a stable fire id, and releasing leases.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from store.capabilities import ClaimingStore
from tests.conftest import StoreFactory

T0 = 1_700_000_000.0


def claiming(factory: StoreFactory) -> Any:
    store = factory()
    assert isinstance(store, ClaimingStore)
    return store


async def test_versions_follow_the_order_writes_were_applied(
    make_reference_store: StoreFactory,
) -> None:
    store = claiming(make_reference_store)
    first = await store.write_timer("user-1", "s", T0 + 50)
    second = await store.write_timer("user-1", "s", T0 + 10)  # earlier time, later write
    cancel = await store.cancel_timer("user-1")
    assert first.version < second.version < cancel.stamp.version
    assert len({first.instance, second.instance, cancel.stamp.instance}) == 3
    assert cancel.existed is True


async def test_claim_due_takes_the_oldest_due_first_and_respects_the_limit(
    make_reference_store: StoreFactory,
) -> None:
    store = claiming(make_reference_store)
    for i in range(10):
        await store.write_timer(f"user-{i}", "s", T0 + i)
    await store.write_timer("future", "s", T0 + 1000)
    batch = await store.claim_due(T0 + 5, limit=4, lease_until=None)
    assert 1 <= len(batch.claims) <= 4
    assert len(batch.claims) + batch.remaining_due == 6
    if getattr(getattr(store, "keys", None), "buckets", 1) == 1:
        # One partition: strictly oldest first. With buckets, oldest first within each.
        assert [c.timer.sender_id for c in batch.claims] == [f"user-{i}" for i in range(4)]
    rest = await store.claim_due(T0 + 5, limit=100, lease_until=None)
    claimed = sorted(c.timer.sender_id for c in batch.claims + rest.claims)
    assert claimed == sorted(f"user-{i}" for i in range(6))
    assert rest.remaining_due == 0
    assert await store.get_timer("future") is not None


async def test_claim_reports_the_oldest_waiting_due_time(
    make_reference_store: StoreFactory,
) -> None:
    store = claiming(make_reference_store)
    for i in range(3):
        await store.write_timer(f"user-{i}", "s", T0 + i)
    batch = await store.claim_due(T0 + 10, limit=1, lease_until=None)
    assert batch.oldest_due is not None
    assert batch.oldest_due >= T0
    while batch.remaining_due:
        batch = await store.claim_due(T0 + 10, limit=10, lease_until=None)
    assert batch.oldest_due is None


async def test_a_lapsed_lease_is_reclaimed_with_the_same_fire_id(
    make_reference_store: StoreFactory,
) -> None:
    store = claiming(make_reference_store)
    stamp = await store.write_timer("user-1", "s", T0)
    first = await store.claim_due(T0, limit=10, lease_until=T0 + 30)
    assert [c.fire_id for c in first.claims] == [stamp.instance]
    assert first.claims[0].attempt == 1
    assert await store.get_timer("user-1") is None  # claimed timers are no longer armed
    held = await store.claim_due(T0 + 29, limit=10, lease_until=T0 + 59)
    assert held.claims == []  # the lease still holds
    again = await store.claim_due(T0 + 30, limit=10, lease_until=T0 + 60)
    assert [c.fire_id for c in again.claims] == [stamp.instance]
    assert again.claims[0].attempt == 2
    await store.complete(again.claims)
    assert (await store.claim_due(T0 + 1000, limit=10, lease_until=T0 + 2000)).claims == []


async def test_a_rearm_during_a_lease_is_a_new_instance(
    make_reference_store: StoreFactory,
) -> None:
    store = claiming(make_reference_store)
    await store.write_timer("user-1", "s", T0)
    leased = await store.claim_due(T0, limit=10, lease_until=T0 + 30)
    rearmed = await store.write_timer("user-1", "s", T0 + 5)
    batch = await store.claim_due(T0 + 5, limit=10, lease_until=T0 + 35)
    assert [c.fire_id for c in batch.claims] == [rearmed.instance]
    assert batch.claims[0].fire_id != leased.claims[0].fire_id


async def test_concurrent_batch_claimers_never_share_a_timer(
    make_reference_store: StoreFactory,
) -> None:
    writer = claiming(make_reference_store)
    for start in range(0, 1000, 100):
        await asyncio.gather(
            *(writer.write_timer(f"c{i}", "s", T0 + i / 1000) for i in range(start, start + 100))
        )
    counts: Counter[str] = Counter()

    async def pod() -> None:
        store = claiming(make_reference_store)
        while True:
            batch = await store.claim_due(T0 + 10, limit=50, lease_until=T0 + 40)
            counts.update(c.fire_id for c in batch.claims)
            await store.complete(batch.claims)
            if not batch.claims and not batch.remaining_due:
                return

    await asyncio.gather(*(pod() for _ in range(8)))
    assert len(counts) == 1000
    assert set(counts.values()) == {1}
