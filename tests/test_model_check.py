"""Model check: random operation sequences against each reference store and a plain-dict model.

A hypothesis `RuleBasedStateMachine` arms, replaces, deletes (conditionally with the exact
current time, with a stale or one-ulp-off time, and unconditionally), reads, lists expired
timers, advances a manual clock and batch-claims, on one store per example, while a dict of
`SessionTimer`s says what the store must hold. Any difference is a failure, both in the rule
that saw it and in an invariant that reads every sender's timer after every step.

Backends: `InMemoryTimerStore`, Redis standalone (one bucket) and Redis cluster (3 masters, 16
hash-tag buckets). Each example gets a fresh store with its own key prefix and its own event
loop (the Redis client binds to the loop it first runs on), closed in `teardown`.

The default run is bounded for CI; `pytest -m slow tests/test_model_check.py` runs 300 examples
per backend.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from store import InMemoryTimerStore, RedisTimerStore, SessionTimer, create_timer_store
from store.base import SessionTimerStore, aclose_store
from store.capabilities import ClaimingStore, supports_claiming
from store.validation import MAX_SCHEDULED_TIME
from tests.conftest import redis_config

T = TypeVar("T")

SENDERS = ("a", "b", "user:1", "{tag}", "}{", "a|b", "😀", "{x}:😀")
"""Few enough that replacements and collisions are frequent; braces, colons, a `|` (the lease
entry separator) and a 4-byte UTF-8 character (Lua counts bytes, Python characters)."""

SESSIONS = st.sampled_from((None, "", "s1", "s:{2}", "🙂"))

METADATA = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(("k", "n", "ü", "{}")),
        st.one_of(
            st.integers(-(2**60), 2**60),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.none(),
            st.text(st.characters(codec="utf-8"), max_size=3),
            st.lists(st.integers(-3, 3), max_size=2),
        ),
        max_size=2,
    ),
)

STARTS = (0.0, 1.5, 1_700_000_000.123456, MAX_SCHEDULED_TIME - 600.75)
"""Clock origins: zero (so one ulp above it is subnormal), small, today, and near the maximum."""

OFFSETS = st.one_of(
    st.just(0.0),
    st.sampled_from((0.1, -0.1, 0.5, -2.25, 59.999, 3600.5)),
    st.floats(-120.0, 600.0),
)
"""Scheduled time relative to the clock: due now, due already, or in the future."""

STEPS = st.one_of(
    st.just(0.0),
    st.sampled_from((1e-6, 0.25, 1.0, 30.5)),
    st.floats(0.0, 10.0),
    st.floats(10.0, 5000.0),
)


def _clamp(when: float) -> float:
    return min(max(when, 0.0), MAX_SCHEDULED_TIME)


def _valid_time(when: float) -> bool:
    return 0.0 <= when <= MAX_SCHEDULED_TIME


class StoreModelMachine(RuleBasedStateMachine):
    """One store against a dict model; `make_store` is set per backend by a subclass."""

    make_store: ClassVar[Callable[[], SessionTimerStore]]

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).make_store()
        self.loop = asyncio.new_event_loop()
        assert supports_claiming(self.store)
        self.claiming: ClaimingStore = self.store  # type: ignore[assignment]
        keys = getattr(self.store, "keys", None)
        self.buckets: int = getattr(keys, "buckets", 1)
        self.bucket_of: Callable[[str], int] = keys.bucket_of if keys is not None else _zero
        self.now = 0.0
        self.model: dict[str, SessionTimer] = {}
        self.history: dict[str, list[float]] = {}  # every time each sender was armed with
        self.versions: dict[str, int] = {}  # newest stamp version seen per sender
        self.instances: dict[str, str] = {}  # instance id of the armed write, when known
        self.fire_ids: set[str] = set()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        try:
            self.run(aclose_store(self.store))
        finally:
            self.loop.close()

    # -- helpers ----------------------------------------------------------------------------

    def due(self) -> dict[str, SessionTimer]:
        return {s: t for s, t in self.model.items() if t.scheduled_time <= self.now}

    def draw_time(self, data: st.DataObject) -> float:
        """A new scheduled time: often exactly another timer's time, so ties happen."""
        if self.model and data.draw(st.integers(0, 3), label="tie") == 0:
            times = sorted({t.scheduled_time for t in self.model.values()})
            return data.draw(st.sampled_from(times), label="tied time")
        return _clamp(self.now + data.draw(OFFSETS, label="offset"))

    def observe_version(self, sender: str, version: int) -> None:
        previous = self.versions.get(sender, 0)
        assert version > previous, f"{sender!r}: version {version} after {previous}"
        self.versions[sender] = version

    def arm(
        self,
        sender: str,
        session: str | None,
        when: float,
        metadata: dict[str, Any] | None,
        stamped: bool,
    ) -> None:
        if stamped:
            stamp = self.run(self.claiming.write_timer(sender, session, when, metadata))
            self.observe_version(sender, stamp.version)
            self.instances[sender] = stamp.instance
        else:
            self.run(self.store.store_timer(sender, session, when, metadata))
            self.instances.pop(sender, None)
        self.model[sender] = SessionTimer.create_timer(sender, session, when, metadata)
        self.history.setdefault(sender, []).append(when)

    def forget(self, sender: str) -> None:
        del self.model[sender]
        self.instances.pop(sender, None)

    # -- rules ------------------------------------------------------------------------------

    @initialize(start=st.sampled_from(STARTS), data=st.data())
    def start(self, start: float, data: st.DataObject) -> None:
        """Set the clock, and arm a few timers so that claims and ties start early."""
        self.now = start
        seeded = data.draw(st.lists(st.sampled_from(SENDERS), max_size=5, unique=True))
        for sender in seeded:
            session = data.draw(SESSIONS, label="session")
            metadata = data.draw(METADATA, label="metadata")
            self.arm(sender, session, self.draw_time(data), metadata, stamped=True)

    @precondition(lambda self: len(self.model) < len(SENDERS))
    @rule(data=st.data(), session=SESSIONS, metadata=METADATA, stamped=st.booleans())
    def store_new(
        self,
        data: st.DataObject,
        session: str | None,
        metadata: dict[str, Any] | None,
        stamped: bool,
    ) -> None:
        sender = data.draw(st.sampled_from([s for s in SENDERS if s not in self.model]))
        self.arm(sender, session, self.draw_time(data), metadata, stamped)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), session=SESSIONS, metadata=METADATA, stamped=st.booleans())
    def replace(
        self,
        data: st.DataObject,
        session: str | None,
        metadata: dict[str, Any] | None,
        stamped: bool,
    ) -> None:
        sender = data.draw(st.sampled_from(sorted(self.model)))
        self.arm(sender, session, self.draw_time(data), metadata, stamped)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete_with_current_time(self, data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from(sorted(self.model)))
        when = self.model[sender].scheduled_time
        deleted = self.run(self.store.delete_timer(sender, only_if_scheduled_time=when))
        assert deleted is True, f"conditional delete of {sender!r} at its exact time {when!r}"
        self.forget(sender)

    @rule(data=st.data(), armed=st.booleans(), kind=st.sampled_from(("up", "down", "earlier")))
    def delete_with_wrong_time(self, data: st.DataObject, armed: bool, kind: str) -> None:
        """One ulp above or below the armed time, or a time the sender had before, must miss."""
        if armed and self.model:
            sender = data.draw(st.sampled_from(sorted(self.model)), label="armed sender")
        else:
            sender = data.draw(st.sampled_from(SENDERS), label="any sender")
        current = self.model.get(sender)
        earlier = [
            t
            for t in self.history.get(sender, ())
            if current is None or t != current.scheduled_time
        ]
        if current is None:
            options = [*earlier, self.now]
        elif kind == "earlier" and earlier:
            options = earlier
        else:
            options = [
                math.nextafter(current.scheduled_time, math.inf if kind == "up" else -math.inf)
            ]
        options = [t for t in options if _valid_time(t)]
        if not options:
            return
        when = data.draw(st.sampled_from(options), label="wrong time")
        deleted = self.run(self.store.delete_timer(sender, only_if_scheduled_time=when))
        assert deleted is False, (
            f"conditional delete of {sender!r} at {when!r} deleted the timer at "
            f"{None if current is None else current.scheduled_time!r}"
        )

    @rule(sender=st.sampled_from(SENDERS), via_cancel=st.booleans())
    def delete_unconditionally(self, sender: str, via_cancel: bool) -> None:
        if via_cancel:
            result = self.run(self.claiming.cancel_timer(sender))
            self.observe_version(sender, result.stamp.version)
            existed = result.existed
        else:
            existed = self.run(self.store.delete_timer(sender))
        assert existed is (sender in self.model), f"delete of {sender!r} reported {existed}"
        if sender in self.model:
            self.forget(sender)

    @rule(sender=st.sampled_from(SENDERS))
    def get_timer(self, sender: str) -> None:
        assert self.run(self.store.get_timer(sender)) == self.model.get(sender)

    @rule()
    def get_expired_now(self) -> None:
        self.check_expired(self.now, self.due())

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), below=st.booleans())
    def get_expired_at_a_timer_time(self, data: st.DataObject, below: bool) -> None:
        """The boundary is inclusive: exactly a timer's time lists it, one ulp below does not."""
        when = data.draw(st.sampled_from(sorted({t.scheduled_time for t in self.model.values()})))
        if below:
            when = math.nextafter(when, -math.inf)
            if not _valid_time(when):
                return
        expected = {s: t for s, t in self.model.items() if t.scheduled_time <= when}
        self.check_expired(when, expected)

    def check_expired(self, cutoff: float, expected: dict[str, SessionTimer]) -> None:
        listed = self.run(self.store.get_expired_timers(cutoff))
        by_sender = {timer.sender_id: timer for timer in listed}
        assert len(by_sender) == len(listed), f"duplicate senders in {listed}"
        assert by_sender == expected, f"cutoff {cutoff!r}"

    @rule(step=STEPS)
    def advance_clock(self, step: float) -> None:
        self.now = min(self.now + step, MAX_SCHEDULED_TIME)

    @rule(limit=st.integers(0, 20))
    def claim_due(self, limit: int) -> None:
        due = self.due()
        batch = self.run(self.claiming.claim_due(self.now, limit=limit, lease_until=None))
        claimed = [claim.timer.sender_id for claim in batch.claims]
        assert len(set(claimed)) == len(claimed), f"claimed twice: {claimed}"
        assert len(claimed) <= limit, f"{len(claimed)} claims over limit {limit}"
        for claim in batch.claims:
            sender = claim.timer.sender_id
            assert sender in due, f"claimed {claim.timer} which is not due at {self.now!r}"
            assert claim.timer == due[sender]
            assert claim.attempt == 1
            assert claim.leased is False
            assert claim.fire_id not in self.fire_ids, f"fire id {claim.fire_id} reused"
            self.fire_ids.add(claim.fire_id)
            if sender in self.instances:
                assert claim.fire_id == self.instances[sender]
                assert claim.version == self.versions[sender]
        # Oldest first within each bucket, in the list and in what was chosen. A bucket gets at
        # least `limit // buckets` of the limit (all of it with one bucket), so it must claim
        # that many of its due timers, and at most one more.
        for bucket in range(self.buckets):
            mine = [
                c.timer.scheduled_time
                for c in batch.claims
                if self.bucket_of(c.timer.sender_id) == bucket
            ]
            waiting = [
                t.scheduled_time
                for s, t in due.items()
                if self.bucket_of(s) == bucket and s not in claimed
            ]
            assert mine == sorted(mine), f"bucket {bucket} not oldest first: {mine}"
            if mine and waiting:
                assert max(mine) <= min(waiting), f"bucket {bucket} skipped older timers"
            due_here = len(mine) + len(waiting)
            share = limit // self.buckets
            assert min(share, due_here) <= len(mine) <= -(-limit // self.buckets)
        for sender in claimed:
            self.forget(sender)
        left = [t.scheduled_time for t in self.due().values()]
        assert batch.remaining_due == len(left)
        assert batch.oldest_due == (min(left) if left else None)

    # -- invariant --------------------------------------------------------------------------

    @invariant()
    def every_sender_matches(self) -> None:
        async def read_all() -> list[SessionTimer | None]:
            return list(await asyncio.gather(*(self.store.get_timer(s) for s in SENDERS)))

        for sender, stored in zip(SENDERS, self.run(read_all()), strict=True):
            assert stored == self.model.get(sender), f"{sender!r}: store has {stored}"


def _zero(_: str) -> int:
    return 0


# -- one machine per backend -----------------------------------------------------------------


def _machine(kind: str, request: pytest.FixtureRequest) -> type[StoreModelMachine]:
    if kind == "memory":

        def make() -> SessionTimerStore:
            return InMemoryTimerStore()
    else:
        topology = request.getfixturevalue(f"redis_{kind}")

        def make() -> SessionTimerStore:
            # A fresh key prefix per example, so examples never see each other's timers.
            store = create_timer_store(redis_config(topology))
            assert isinstance(store, RedisTimerStore)
            assert store.keys.buckets == (16 if kind == "cluster" else 1)
            return store

    name = f"{kind.capitalize()}StoreModelMachine"
    return type(name, (StoreModelMachine,), {"make_store": staticmethod(make)})


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=30, deadline=None)


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("standalone", id="standalone", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("kind", BACKENDS)
def test_store_matches_model(kind: str, request: pytest.FixtureRequest) -> None:
    run_state_machine_as_test(_machine(kind, request), settings=_settings(25))


@pytest.mark.slow
@pytest.mark.parametrize("kind", BACKENDS)
def test_store_matches_model_long(kind: str, request: pytest.FixtureRequest) -> None:
    run_state_machine_as_test(_machine(kind, request), settings=_settings(300))
