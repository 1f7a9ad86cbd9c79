"""`FallbackTimerStore` over a real Redis store that can be switched unreachable.

`FlakyStore` makes the primary refuse calls without touching its data, so each test controls
exactly when the outage starts and ends; the kill/SIGSTOP tests in `tests/integration` do the
same with real process faults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from servers import Topology
from store import ManualClock, StoreUnavailableError, create_timer_store
from store.fallback import FallbackTimerStore
from store.redis import RedisTimerStore
from tests.conftest import redis_config
from tests.fixtures.flaky import FlakyStore

T0 = 1_700_000_000.0
Pod = tuple[FallbackTimerStore, FlakyStore, list[tuple[str, dict[str, Any]]]]


@pytest.fixture
async def make_pod(redis_standalone: Topology) -> AsyncIterator[Callable[[], Pod]]:
    """Pods sharing one Redis deployment: each has its own client, flaky switch and clock."""
    section = redis_config(redis_standalone)
    clock = ManualClock(T0)
    built: list[RedisTimerStore] = []

    def build() -> Pod:
        primary = create_timer_store(section)
        assert isinstance(primary, RedisTimerStore)
        built.append(primary)
        flaky = FlakyStore(primary)
        events: list[tuple[str, dict[str, Any]]] = []
        store = FallbackTimerStore(
            flaky,
            clock=clock,
            pacing=clock,
            probe_interval=1.0,
            sink=lambda kind, **fields: events.append((kind, fields)),
        )
        return store, flaky, events

    build.clock = clock  # type: ignore[attr-defined]
    yield build
    for primary in built:
        await primary.aclose()


def fail_second_merge_chunk(flaky: FlakyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the primary down again just as a merge sends its second chunk."""
    original = flaky.reconcile
    chunks = 0

    async def reconcile(*args: Any, **kwargs: Any) -> Any:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            flaky.down = True
        return await original(*args, **kwargs)

    monkeypatch.setattr(flaky, "reconcile", reconcile)


async def test_activates_once_on_the_first_error_and_serves_from_memory(
    make_pod: Callable[[], Pod],
) -> None:
    store, flaky, events = make_pod()
    flaky.down = True
    with capture_logs() as logs:
        for index in range(5):
            await store.store_timer(f"u{index}", "s", T0 + index)
        await store.get_timer("u0")
        await store.delete_timer("u1")
    assert store.active
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "timer_store.fallback.activated"
    ]
    assert [kind for kind, _ in events].count("fallback_activated") == 1
    assert await store.get_timer("u0") is not None
    assert store.fallback_pending() == 4
    flaky.down = False
    assert await flaky.inner.get_timer("u0") is None  # nothing reached Redis


async def test_only_the_poll_path_probes_and_at_the_probe_interval(
    make_pod: Callable[[], Pod],
) -> None:
    store, flaky, _ = make_pod()
    flaky.down = True
    await store.store_timer("u1", "s", T0)
    calls = flaky.calls
    for _ in range(3):
        await store.store_timer("u1", "s", T0)
        await store.claim_due(T0, limit=10, lease_until=None)
    assert flaky.calls == calls  # no probe before the interval, none from writes
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=10, lease_until=None)
    assert flaky.calls == calls + 1


async def test_recovery_merges_writes_cancels_and_fires_then_deactivates_once(
    make_pod: Callable[[], Pod],
) -> None:
    store, flaky, events = make_pod()
    await store.store_timer("cancelled", "s", T0 + 100)  # armed before the outage
    await store.store_timer("fired", "s", T0 + 100)
    flaky.down = True
    await store.store_timer("new", "s", T0 + 50)
    await store.delete_timer("cancelled")
    await store.store_timer("fired", "s", T0 + 1)  # re-armed during the outage...
    batch = await store.claim_due(T0 + 2, limit=10, lease_until=None)  # ...and fired there
    assert [c.timer.sender_id for c in batch.claims] == ["fired"]
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    with capture_logs() as logs:
        await store.claim_due(T0 + 2, limit=10, lease_until=None)
    assert not store.active
    inner = flaky.inner
    assert (await inner.get_timer("new")).scheduled_time == T0 + 50  # type: ignore[union-attr]
    assert await inner.get_timer("cancelled") is None
    assert await inner.get_timer("fired") is None  # fired instances are never pushed back
    deactivated = [e for e in logs if e["event"] == "timer_store.fallback.deactivated"]
    assert len(deactivated) == 1
    assert deactivated[0]["applied"] == 3
    kinds = [kind for kind, _ in events]
    assert kinds.index("fallback_activated") < kinds.index("fallback_deactivated")
    assert kinds.count("reconciled") == 3


async def test_a_newer_write_by_a_connected_pod_wins_over_the_cut_off_pod(
    make_pod: Callable[[], Pod],
) -> None:
    cut_off, flaky, events = make_pod()
    connected, _, _ = make_pod()
    await cut_off.store_timer("x", "s", T0 + 10)  # both pods saw this
    await connected.store_timer("z", "s", T0 + 10)
    await cut_off.claim_due(T0, limit=1, lease_until=None)  # refresh its horizon
    flaky.down = True
    await cut_off.store_timer("x", "s", T0 + 20)  # outage write
    await cut_off.store_timer("y", "s", T0 + 30)  # nobody else touches y
    await cut_off.store_timer("z", "s", T0 + 40)
    await connected.store_timer("x", "s", T0 + 25)  # newer, in Redis
    await connected.delete_timer("z")  # a cancel is a write too (tombstone)
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await cut_off.claim_due(T0, limit=1, lease_until=None)
    assert (await connected.get_timer("x")).scheduled_time == T0 + 25  # type: ignore[union-attr]
    assert (await connected.get_timer("y")).scheduled_time == T0 + 30  # type: ignore[union-attr]
    assert await connected.get_timer("z") is None
    outcomes = {f["sender_id"]: f["applied"] for kind, f in events if kind == "reconciled"}
    assert outcomes == {"x": False, "y": True, "z": False}


async def test_our_own_write_that_timed_out_but_landed_is_not_a_newer_write(
    make_pod: Callable[[], Pod],
) -> None:
    store, flaky, events = make_pod()
    await store.claim_due(T0, limit=1, lease_until=None)
    flaky.lose_replies = True  # SIGSTOP-like: the write lands, the reply is lost
    await store.store_timer("x", "s", T0 + 10)
    flaky.lose_replies = False
    flaky.down = True
    await store.store_timer("x", "s", T0 + 20)  # the user wrote again during the outage
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert (await flaky.inner.get_timer("x")).scheduled_time == T0 + 20  # type: ignore[union-attr]
    assert [kind for kind, _ in events].count("write_unacknowledged") == 1


async def test_drain_merges_back_when_the_primary_is_reachable(
    make_pod: Callable[[], Pod],
) -> None:
    store, flaky, _ = make_pod()
    flaky.down = True
    await store.store_timer("u1", "s", T0 + 10)
    assert await store.drain() is False  # still down: nothing merged, nothing lost yet
    assert store.fallback_pending() == 1
    flaky.down = False
    assert await store.drain() is True
    assert await flaky.inner.get_timer("u1") is not None


async def test_a_failure_during_the_merge_keeps_the_rest_for_the_next_probe(
    make_pod: Callable[[], Pod], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, flaky, _ = make_pod()
    flaky.down = True
    for index in range(600):  # more than one merge chunk
        await store.store_timer(f"u{index}", "s", T0 + 10)
    flaky.down = False
    fail_second_merge_chunk(flaky, monkeypatch)
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert store.active
    assert store.fallback_pending() == 600 - 256
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert not store.active
    expired = await flaky.inner.get_expired_timers(T0 + 10)
    assert len(expired) == 600


async def test_reconcile_switched_off_drops_the_outage_writes(
    make_pod: Callable[[], Pod],
) -> None:
    """The deliberately broken stack the gate must catch: Rasa's behaviour."""
    store, flaky, events = make_pod()
    store.reconcile_enabled = False
    flaky.down = True
    await store.store_timer("u1", "s", T0 + 10)
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert not store.active
    assert await flaky.inner.get_timer("u1") is None
    assert [kind for kind, _ in events].count("reconcile_dropped") == 1


async def test_a_retried_merge_does_not_take_our_own_earlier_merge_for_a_newer_write(
    make_pod: Callable[[], Pod], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge fails after its first chunk; the pod writes again; the retry must apply it."""
    store, flaky, events = make_pod()
    await store.claim_due(T0, limit=1, lease_until=None)  # a horizon from before the outage
    flaky.down = True
    for index in range(300):  # two merge chunks
        await store.store_timer(f"u{index}", "s", T0 + 10)
    flaky.down = False
    fail_second_merge_chunk(flaky, monkeypatch)
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)  # merges chunk 1, fails on chunk 2
    assert store.active
    await store.store_timer("u0", "s", T0 + 99)  # u0 was merged already; the user wrote again
    await store.delete_timer("u1")  # and another user ended their conversation
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert not store.active
    assert (await flaky.inner.get_timer("u0")).scheduled_time == T0 + 99  # type: ignore[union-attr]
    assert await flaky.inner.get_timer("u1") is None
    skipped = [f for kind, f in events if kind == "reconciled" and not f["applied"]]
    assert skipped == []


async def test_a_merge_whose_reply_was_lost_never_arms_a_timer_that_fired_since(
    make_pod: Callable[[], Pod], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge lands but its reply is lost; another pod fires the merged timer; the retry
    must not arm it again (swarm seed 1772: the same fire id fired twice)."""
    store, flaky, events = make_pod()
    other, _, _ = make_pod()
    await store.claim_due(T0, limit=1, lease_until=None)  # a horizon from before the outage
    flaky.down = True
    await store.store_timer("u1", "s", T0 + 1)
    flaky.down = False
    original = flaky.reconcile

    async def lands_then_times_out(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        flaky.down = True
        raise StoreUnavailableError("timed out (the merge may have been applied)")

    monkeypatch.setattr(flaky, "reconcile", lands_then_times_out)
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert store.active  # in doubt: the entry waits for the next probe
    monkeypatch.setattr(flaky, "reconcile", original)
    fired = await other.claim_due(T0 + 5, limit=10, lease_until=None)
    assert [claim.timer.sender_id for claim in fired.claims] == ["u1"]
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert not store.active
    assert await flaky.inner.get_timer("u1") is None
    merged = [f for kind, f in events if kind == "reconciled"]
    assert [(f["sender_id"], f["applied"]) for f in merged] == [("u1", False)]


async def test_a_merge_cut_short_names_the_timers_it_left_in_limbo(
    make_pod: Callable[[], Pod], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk on its way when the primary failed again left memory and may not have landed:
    this pod no longer fires those timers, so it says which they are (the checker excuses their
    wait until the pod merges back)."""
    store, flaky, events = make_pod()
    flaky.down = True
    for index in range(600):
        await store.store_timer(f"u{index}", "s", T0 + 10)
    flaky.down = False
    fail_second_merge_chunk(flaky, monkeypatch)
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    [limbo] = [fields for kind, fields in events if kind == "merge_interrupted"]
    assert len(limbo["instances"]) == 256  # the second chunk: sent, outcome unknown
    assert limbo["elapsed"] >= 0.0
    in_memory = {t.sender_id for t in await store.get_expired_timers(T0 + 10)}
    assert len(in_memory) == 600 - 2 * 256  # the third chunk still in memory, never sent
    flaky.down = False
    make_pod.clock.advance(1.0)  # type: ignore[attr-defined]
    await store.claim_due(T0, limit=1, lease_until=None)
    assert len(await flaky.inner.get_expired_timers(T0 + 10)) == 600
