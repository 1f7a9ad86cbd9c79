"""`TimerService` with a manual clock: no sleeping, no wall clock, every outcome checked."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from servers import Topology
from store import (
    InMemoryTimerStore,
    ManualClock,
    RedisTimerStore,
    SessionTimer,
    StoreUnavailableError,
    create_timer_store,
)
from store.options import ServiceSettings
from store.service import TimerService
from tests.conftest import redis_config
from tests.fixtures.custom_store import SortedSetTimerStore


class Recorder:
    """A fire callback that records calls and can be told to fail or hang."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, float, str]] = []
        self.fail: set[str] = set()
        self.hang: set[str] = set()

    async def __call__(
        self, sender_id: str, session_id: str | None, scheduled_time: float, fire_id: str
    ) -> None:
        self.calls.append((sender_id, session_id, scheduled_time, fire_id))
        if sender_id in self.fail:
            raise RuntimeError("tracker unavailable")
        if sender_id in self.hang:
            await asyncio.Event().wait()


def make_service(**settings: Any) -> tuple[TimerService, ManualClock, Recorder, list[Any]]:
    clock = ManualClock()
    recorder = Recorder()
    events: list[Any] = []
    service = TimerService(
        InMemoryTimerStore(),
        clock,
        recorder,
        settings=ServiceSettings(**settings),
        sink=lambda kind, **fields: events.append((kind, fields)),
    )
    return service, clock, recorder, events


async def test_schedule_arms_timeout_from_the_clock_and_replaces() -> None:
    service, clock, _, _ = make_service()
    first = await service.schedule_timer("u1", "s1", 30)
    assert first.scheduled_time == clock.now() + 30
    clock.advance(10)
    second = await service.schedule_timer("u1", "s2", 30)
    assert second.stamp.version > first.stamp.version
    assert await service.get_timer("u1") == SessionTimer("u1", "s2", clock.now() + 30)


async def test_poll_fires_only_what_is_due_and_only_once() -> None:
    service, clock, recorder, _ = make_service()
    await service.schedule_timer("early", "s", 5)
    await service.schedule_timer("late", "s", 50)
    assert (await service.poll_once()).fired == []
    clock.advance(5)
    result = await service.poll_once()
    assert [f.claim.timer.sender_id for f in result.fired] == ["early"]
    assert [f.result for f in result.fired] == ["ok"]
    assert (await service.poll_once()).fired == []
    clock.advance(100)
    await service.poll_once()
    assert [call[0] for call in recorder.calls] == ["early", "late"]


async def test_a_rearm_before_the_deadline_postpones_the_fire() -> None:
    service, clock, recorder, _ = make_service()
    await service.schedule_timer("u1", "s", 10)
    clock.advance(9)
    await service.schedule_timer("u1", "s", 10)
    clock.advance(2)
    assert (await service.poll_once()).fired == []
    clock.advance(8)
    assert len((await service.poll_once()).fired) == 1
    assert recorder.calls[0][2] == clock.now()


async def test_cancel_prevents_the_fire() -> None:
    service, clock, recorder, _ = make_service()
    await service.schedule_timer("u1", "s", 10)
    assert await service.cancel_timer("u1") is True
    assert await service.cancel_timer("u1") is False
    clock.advance(20)
    await service.poll_once()
    assert recorder.calls == []


async def test_the_callback_gets_a_fire_id_that_names_the_instance() -> None:
    service, clock, recorder, events = make_service()
    armed = await service.schedule_timer("u1", "s", 1)
    clock.advance(1)
    await service.poll_once()
    assert recorder.calls[0][3] == armed.stamp.instance
    kinds = [kind for kind, _ in events]
    assert kinds == ["schedule", "claim", "fire", "fire"]
    assert [fields.get("outcome") for kind, fields in events if kind == "fire"] == [
        "fire_start",
        "fire_done",
    ]


async def test_a_failing_callback_is_retried_after_the_lease_with_the_same_fire_id() -> None:
    service, clock, recorder, _ = make_service(lease_seconds=30, fire_timeout=5)
    recorder.fail.add("u1")
    await service.schedule_timer("u1", "s", 1)
    clock.advance(1)
    assert [f.result for f in (await service.poll_once()).fired] == ["error"]
    clock.advance(29)
    assert (await service.poll_once()).fired == []  # the lease still holds
    recorder.fail.clear()
    clock.advance(1)
    retried = (await service.poll_once()).fired
    assert [(f.result, f.claim.attempt) for f in retried] == [("ok", 2)]
    assert recorder.calls[0][3] == recorder.calls[1][3]
    clock.advance(100)
    assert (await service.poll_once()).fired == []


async def test_a_callback_that_always_fails_is_given_up_after_max_attempts() -> None:
    service, clock, recorder, events = make_service(
        lease_seconds=20, fire_timeout=5, max_fire_attempts=2
    )
    recorder.fail.add("u1")
    await service.schedule_timer("u1", "s", 1)
    for _ in range(5):
        clock.advance(21)
        await service.poll_once()
    assert len(recorder.calls) == 2
    assert [kind for kind, _ in events].count("give_up") == 1


async def test_a_hanging_callback_times_out() -> None:
    service, clock, recorder, _ = make_service(fire_timeout=0.05, lease_seconds=30)
    recorder.hang.add("u1")
    await service.schedule_timer("u1", "s", 1)
    clock.advance(1)
    assert [f.result for f in (await service.poll_once()).fired] == ["timeout"]


async def test_at_most_once_never_retries() -> None:
    service, clock, recorder, _ = make_service(delivery="at_most_once")
    recorder.fail.add("u1")
    await service.schedule_timer("u1", "s", 1)
    clock.advance(1)
    await service.poll_once()
    clock.advance(1000)
    await service.poll_once()
    assert len(recorder.calls) == 1


async def test_skip_older_than_skips_and_records_missed_timers() -> None:
    service, clock, recorder, events = make_service(skip_older_than=60)
    await service.schedule_timer("stale", "s", 1)
    clock.advance(30)
    await service.schedule_timer("fresh", "s", 1)
    clock.advance(40)  # stale is 69 s overdue, fresh 39 s
    results = {f.claim.timer.sender_id: f.result for f in (await service.poll_once()).fired}
    assert results == {"stale": "skipped", "fresh": "ok"}
    assert [call[0] for call in recorder.calls] == ["fresh"]
    assert [kind for kind, _ in events].count("skip") == 1


async def test_recover_works_a_backlog_off_in_batches() -> None:
    service, clock, recorder, _ = make_service(batch_size=40)
    for index in range(100):
        await service.schedule_timer(f"u{index}", "s", 1 + index / 100)
    clock.advance(10)
    remaining = []
    while True:
        result = await service.recover()
        remaining.append(result.remaining_due)
        if result.remaining_due == 0:
            break
    assert remaining == [60, 20, 0]
    assert sorted(call[0] for call in recorder.calls) == sorted(f"u{i}" for i in range(100))


async def test_the_service_never_reads_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    service, clock, recorder, _ = make_service()

    def forbidden() -> float:
        raise AssertionError("the service read the wall clock")

    monkeypatch.setattr(time, "time", forbidden)
    await service.schedule_timer("u1", "s", 1)
    clock.advance(2)
    await service.poll_once()
    assert len(recorder.calls) == 1


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), "10", True])
async def test_bad_timeouts_are_refused(seconds: object) -> None:
    service, _, _, _ = make_service()
    with pytest.raises((ValueError, TypeError), match="timeout_seconds"):
        await service.schedule_timer("u1", "s", seconds)  # type: ignore[arg-type]
    assert await service.get_timer("u1") is None


async def test_a_store_with_only_the_five_methods_is_at_most_once(
    redis_standalone: Any,
) -> None:
    """The documented path: list, then conditional delete; the service says so at start."""
    from store import EndpointConfig

    port = redis_standalone.timer_store_config()["port"]
    store = SortedSetTimerStore(
        EndpointConfig(redis_host="127.0.0.1", redis_port=port, namespace="svcfive")
    )
    clock = ManualClock()
    recorder = Recorder()
    with capture_logs() as logs:
        service = TimerService(store, clock, recorder)
    assert service.delivery == "at_most_once"
    assert [entry["event"] for entry in logs] == ["timer_store.service.at_most_once"]
    await service.schedule_timer("u1", "s", 1)
    await service.schedule_timer("u2", "s", 2)
    clock.advance(2)
    fired = (await service.poll_once()).fired
    assert sorted(f.claim.timer.sender_id for f in fired) == ["u1", "u2"]
    assert all(not f.claim.leased for f in fired)
    assert (await service.poll_once()).fired == []


async def test_a_five_method_store_failing_mid_batch_fires_what_it_already_deleted() -> None:
    """The example store's seed 8: a delete failed after another had succeeded; the timer
    already deleted from the store was this pod's alone, and it was never fired."""
    from tests.fixtures.broken_stores import DictStore

    class GoesAwayStore(DictStore):
        deletes = 0

        async def delete_timer(
            self, sender_id: str, only_if_scheduled_time: float | None = None
        ) -> bool:
            self.deletes += 1
            if self.deletes == 2:
                raise ConnectionError("connection reset")
            return await super().delete_timer(sender_id, only_if_scheduled_time)

    clock = ManualClock()
    recorder = Recorder()
    service = TimerService(GoesAwayStore(), clock, recorder)
    await service.schedule_timer("u1", "s", 1)
    await service.schedule_timer("u2", "s", 2)
    clock.advance(5)
    with pytest.raises(ConnectionError):
        await service.poll_once()
    assert [call[0] for call in recorder.calls] == ["u1"]
    result = await service.poll_once()  # the store is back: the other one fires now
    assert [fired.claim.timer.sender_id for fired in result.fired] == ["u2"]


async def test_a_claim_that_fails_in_one_bucket_fires_what_the_others_gave(
    redis_standalone: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most once, a bucket's claim deletes: a failure in another bucket must not drop the
    timers the answering buckets handed over."""
    section = redis_config(redis_standalone, buckets=4, delivery="at_most_once")
    store = create_timer_store(section)
    assert isinstance(store, RedisTimerStore)
    clock = ManualClock()
    recorder = Recorder()
    service = TimerService(store, clock, recorder, settings=ServiceSettings.from_mapping(section))
    senders = [f"u{i}" for i in range(40)]
    for sender in senders:
        await service.schedule_timer(sender, "s", 1)
    clock.advance(5)
    original = store._call

    async def second_bucket_down(run: Any, op: str) -> Any:
        if getattr(run, "keywords", {}).get("index") == 1:
            raise StoreUnavailableError("master of bucket 1 unreachable")
        return await original(run, op)

    monkeypatch.setattr(store, "_call", second_bucket_down)
    with pytest.raises(StoreUnavailableError):
        await service.poll_once()
    fired_first = {call[0] for call in recorder.calls}
    assert fired_first
    assert not {s for s in fired_first if store.keys.bucket_of(s) == 1}
    monkeypatch.setattr(store, "_call", original)
    await service.poll_once()
    assert sorted(call[0] for call in recorder.calls) == sorted(senders)
    await store.aclose()
