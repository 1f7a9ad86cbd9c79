"""Every rule, both ways: a story that breaks it fails with exactly that rule, and its nearest
legitimate neighbour passes. Every declared-loss class, both ways: declared when its cause is
in the history, a violation when the cause is missing.

A rule no story breaks could pass every broken store; these stories are what keeps each rule
honest when the checker changes (docs/architecture.md, section 5).
"""

from __future__ import annotations

import pytest

from tests.checker.story import Story, bound, rules

END = 60.0


# -- claims and fires ----------------------------------------------------------------------


def test_a_claim_after_a_newer_write_is_superseded() -> None:
    story = Story()
    old = story.arm(1.0, "pod-0", "user-1", 5.0, "a", version=1)
    new = story.arm(3.0, "pod-0", "user-1", 5.0, "b", version=2)
    story.fire(6.0, "pod-0", old, "a")
    story.fire(8.0, "pod-0", new, "b", version=2)
    assert rules(story.judge(END)) == ["superseded"]


def test_a_claim_before_the_newer_write_is_current() -> None:
    story = Story()
    old = story.arm(1.0, "pod-0", "user-1", 1.0, "a", version=1)
    story.fire(2.0, "pod-0", old, "a")
    new = story.arm(3.0, "pod-0", "user-1", 5.0, "b", version=2)
    story.fire(8.0, "pod-0", new, "b", version=2)
    assert rules(story.judge(END)) == []


def _merged(story: Story) -> dict[str, object]:
    """A timer written to pod-0's fallback as `f`, then merged into Redis as `r`."""
    timer = story.arm(1.0, "pod-0", "user-1", 5.0, "f", origin="fallback")
    merged = {"sender_id": "user-1", "scheduled_time": 6.0, "version": 2, "instance": "r"}
    story.at(3.0, "reconciled", "pod-0", **merged, origin="redis", elapsed=0.001, applied=True,
             from_instance="f")  # fmt: skip
    return timer


def test_one_timer_fired_from_the_fallback_and_from_redis_is_a_duplicate() -> None:
    story = Story()
    timer = _merged(story)
    story.fire(6.0, "pod-0", timer, "f", origin="fallback")
    story.fire(6.1, "pod-0", timer, "r", version=2)
    assert rules(story.judge(END)) == ["duplicate"]


def test_a_merged_timer_fired_once_from_redis_is_fine() -> None:
    story = Story()
    story.fire(6.1, "pod-0", _merged(story), "r", version=2)
    assert rules(story.judge(END)) == []


@pytest.mark.parametrize(("restarted", "expected"), [(False, ["duplicate"]), (True, [])])
def test_a_five_method_timer_fired_twice_is_a_duplicate_unless_a_restart_brought_it_back(
    restarted: bool, expected: list[str]
) -> None:
    story = Story(delivery="at_most_once", fallback=False)
    timer = story.arm(1.0, "pod-0", "user-1", 5.0, "c", origin="custom")
    story.fire(6.0, "pod-0", timer, "c", origin="custom")
    if restarted:
        story.at(7.0, "redis_restart", kept_until=None)
    story.fire(8.0, "pod-0", timer, "c", origin="custom")
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared["restart_resurrection"] == int(restarted)


@pytest.mark.parametrize(("crashed", "expected"), [(False, ["unexplained_refire"]), (True, [])])
def test_a_timer_fired_again_needs_an_explanation(crashed: bool, expected: list[str]) -> None:
    story = Story()
    timer = story.arm(1.0, "pod-0", "user-1", 5.0, "a")
    story.fire(6.0, "pod-0", timer, "a")
    if crashed:
        story.at(6.5, "pod_crash", "pod-0", fallback_lost=[], reason="crash")
        story.at(6.8, "pod_start", "pod-0", delivery="at_least_once", fallback=True)
    story.fire(7.0, "pod-0", timer, "a")
    assert rules(story.judge(END)) == expected


@pytest.mark.parametrize(("fired_at", "expected"), [(5.0, ["early"]), (6.0, [])])
def test_a_fire_before_its_deadline_is_early(fired_at: float, expected: list[str]) -> None:
    story = Story()
    story.fire(fired_at, "pod-0", story.arm(1.0, "pod-0", "user-1", 5.0, "a"), "a")
    assert rules(story.judge(END)) == expected


def test_a_claim_no_write_explains_is_an_unknown_instance() -> None:
    story = Story()
    story.claim(6.0, "pod-0", {"sender_id": "user-9", "session_id": "s", "scheduled_time": 6.0},
                "zzz")  # fmt: skip
    assert rules(story.judge(END)) == ["unknown_instance"]


def test_a_claim_of_a_write_whose_reply_never_came_is_that_write() -> None:
    story = Story()
    story.at(1.0, "message", "pod-0", sender_id="user-1", session_id="s", scheduled_time=6.0,
             timeout=5.0)  # fmt: skip
    story.at(1.5, "write_unacknowledged", "pod-0", sender_id="user-1", scheduled_time=6.0,
             op="schedule")  # fmt: skip
    story.fire(6.0, "pod-0", {"sender_id": "user-1", "session_id": "s", "scheduled_time": 6.0},
               "ghost")  # fmt: skip
    verdict = story.judge(END)
    assert rules(verdict) == []
    assert verdict.stats["instances"] == 2


@pytest.mark.parametrize(("session", "expected"), [("other", ["payload"]), ("s", [])])
def test_a_fire_carries_the_session_it_was_armed_with(session: str, expected: list[str]) -> None:
    story = Story()
    timer = story.arm(1.0, "pod-0", "user-1", 5.0, "a", session="s")
    story.fire(6.0, "pod-0", timer, "a", session_id=session)
    assert rules(story.judge(END)) == expected


# -- liveness ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cancelled", "expected"), [(False, ["lost"]), (True, [])])
def test_a_current_timer_that_never_fires_is_lost(cancelled: bool, expected: list[str]) -> None:
    story = Story()
    story.arm(1.0, "pod-0", "user-1", 5.0, "a")
    if cancelled:
        story.at(3.0, "cancel", "pod-0", sender_id="user-1", version=2, origin="redis",
                 elapsed=0.001)  # fmt: skip
    assert rules(story.judge(END)) == expected


def test_a_fire_later_than_the_bound_is_late() -> None:
    on_time = Story()
    on_time.fire(6.5, "pod-0", on_time.arm(1.0, "pod-0", "user-1", 5.0, "a"), "a")
    verdict = on_time.judge(END)
    assert rules(verdict) == []
    late = Story()
    late.fire(6.0 + bound(verdict) + 0.5, "pod-0", late.arm(1.0, "pod-0", "user-1", 5.0, "a"), "a")
    assert rules(late.judge(END)) == ["late"]


@pytest.mark.parametrize(("crash_after", "expected"), [(0.5, []), (5.0, ["lost"])])
def test_an_at_most_once_crash_excuses_a_five_method_timer_only_while_it_was_on_time(
    crash_after: float, expected: list[str]
) -> None:
    """The pod may have been deleting the timer when it died, so its delete may have landed
    unreported; but only while a claim of it was still on time (D + the lateness bound)."""
    story = Story(delivery="at_most_once", fallback=False)
    story.arm(1.0, "pod-0", "user-1", 5.0, "c", origin="custom")
    crash = 6.0 + crash_after
    story.at(crash, "pod_crash", "pod-0", fallback_lost=[], reason="crash")
    story.at(crash + 0.5, "pod_start", "pod-0", delivery="at_most_once", fallback=False)
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared["crash_between_claim_and_fire"] == (0 if expected else 1)


# -- the fallback ------------------------------------------------------------------------------


def test_an_outage_met_by_a_timely_fallback_passes() -> None:
    story = Story()
    story.outage(10.0, 20.0)
    assert rules(story.judge(END)) == []


def test_an_outage_without_a_fallback_is_not_exercised_and_not_activated() -> None:
    story = Story()
    story.outage(10.0, 20.0, pod=None)
    assert rules(story.judge(END)) == ["not_exercised", "fallback_activation"]


def test_a_fallback_that_never_merges_back_fails_deactivation() -> None:
    story = Story()
    story.outage(10.0, 20.0, pod=None)
    story.at(10.5, "fallback_activated", "pod-0", outage=1, reason="unreachable")
    story.at(30.0, "fallback_deactivated", "pod-0", applied=0, skipped=0, unverified=0)
    assert rules(story.judge(END)) == ["fallback_deactivation"]


def test_a_fallback_that_turns_off_while_redis_is_still_gone_flaps() -> None:
    story = Story()
    story.outage(10.0, 20.0)
    story.at(14.0, "fallback_deactivated", "pod-0", applied=0, skipped=0, unverified=0)
    story.at(14.5, "fallback_activated", "pod-0", outage=2, reason="unreachable")
    assert rules(story.judge(END)) == ["fallback_flapping"]


def test_a_fallback_with_no_fault_is_spurious() -> None:
    story = Story()
    story.at(30.0, "fallback_activated", "pod-0", outage=1, reason="unreachable")
    story.at(31.0, "fallback_deactivated", "pod-0", applied=0, skipped=0, unverified=0)
    assert rules(story.judge(END)) == ["spurious_fallback"]


@pytest.mark.parametrize(("crashed", "expected"), [(True, []), (False, ["not_exercised"])])
def test_a_planned_pod_crash_must_happen(crashed: bool, expected: list[str]) -> None:
    story = Story()
    story.at(10.0, "fault_start", fault="pod_crash", fault_index=0, target="pod-0")
    if crashed:
        story.at(10.0, "pod_crash", "pod-0", fallback_lost=[], reason="crash")
        story.at(12.0, "pod_start", "pod-0", delivery="at_least_once", fallback=True)
    story.at(12.0, "fault_end", fault="pod_crash", fault_index=0)
    assert rules(story.judge(END)) == expected


# -- what users saw fail ---------------------------------------------------------------------


def test_a_write_that_fails_with_no_fault_is_a_violation() -> None:
    story = Story()
    story.fail_write(5.0, "pod-0", "user-1")
    assert rules(story.judge(END)) == ["write_failed"]


def test_a_write_that_fails_during_an_outage_is_declared() -> None:
    story = Story()
    story.outage(4.0, 8.0)
    story.fail_write(5.0, "pod-0", "user-1")
    verdict = story.judge(END)
    assert rules(verdict) == []
    assert verdict.declared["write_failed_outage"] == 1


def test_a_write_that_fails_as_its_pod_dies_is_declared() -> None:
    story = Story()
    story.fail_write(5.0, "pod-0", "user-1")
    story.at(5.0, "pod_crash", "pod-0", fallback_lost=[], reason="crash")
    story.at(6.0, "pod_start", "pod-0", delivery="at_least_once", fallback=True)
    verdict = story.judge(END)
    assert rules(verdict) == []
    assert verdict.declared["write_failed_crash"] == 1


def test_a_write_that_raises_anything_but_a_connectivity_error_is_a_store_error() -> None:
    story = Story()
    story.outage(4.0, 8.0)
    story.fail_write(5.0, "pod-0", "user-1", unavailable=False)
    assert rules(story.judge(END)) == ["store_error"]


def test_a_poll_that_raises_anything_but_a_connectivity_error_is_a_store_error() -> None:
    story = Story()
    story.at(5.0, "store_error", "pod-0", op="claim_due", error="AttributeError", message="x")
    assert rules(story.judge(END)) == ["store_error"]


@pytest.mark.parametrize(("lag", "expected"), [(2.0, ["loop_stall"]), (0.5, [])])
def test_an_event_loop_stall_over_the_bound_fails(lag: float, expected: list[str]) -> None:
    story = Story()
    story.at(5.0, "loop_lag", "pod-0", lag=lag)
    assert rules(story.judge(END, loop_stall_bound=1.0)) == expected


def test_a_run_that_arms_nothing_proves_nothing() -> None:
    assert rules(Story(steady=False).judge(END)) == ["vacuous"]


def test_a_run_in_which_nothing_fires_proves_nothing() -> None:
    story = Story(steady=False)
    story.arm(1.0, "pod-0", "user-1", 100.0, "a")
    assert rules(story.judge(END)) == ["vacuous"]


# -- declared losses ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kept_until", "expected"), [(2.0, []), (6.0, ["lost"])])
def test_a_write_a_restart_did_not_keep_is_a_declared_loss(
    kept_until: float, expected: list[str]
) -> None:
    story = Story()
    story.arm(5.0, "pod-0", "user-1", 20.0, "a", version=3)
    story.outage(10.0, 12.0, kind="redis_restart")
    story.at(12.0, "redis_restart", kept_until=kept_until, kept_versions={})
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared["restart_lost_write"] == (0 if expected else 1)


@pytest.mark.parametrize("cause", ["restart", "failover"])
@pytest.mark.parametrize(("lost", "expected"), [(True, []), (False, ["superseded"])])
def test_a_timer_cancelled_then_lost_by_redis_is_a_declared_resurrection(
    cause: str, lost: bool, expected: list[str]
) -> None:
    """The cancel at 3 s is lost if Redis kept only what was written by 2 s."""
    story = Story()
    timer = story.arm(1.0, "pod-0", "user-1", 20.0, "a", version=1)
    story.at(3.0, "cancel", "pod-0", sender_id="user-1", version=2, origin="redis", elapsed=0.001)
    kept_until = 2.0 if lost else 4.0
    if cause == "restart":
        story.outage(5.0, 6.0, kind="redis_restart")
        story.at(6.0, "redis_restart", kept_until=kept_until, kept_versions={})
    else:
        story.outage(5.0, 6.0, mode="failover", replication_window=5.0 - kept_until)
    story.fire(21.0, "pod-0", timer, "a")
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared[f"{cause}_resurrection"] == int(lost)


@pytest.mark.parametrize(("lost", "expected"), [(True, []), (False, ["lost"])])
def test_a_fallback_timer_of_a_crashed_pod_is_a_declared_loss(
    lost: bool, expected: list[str]
) -> None:
    story = Story()
    story.arm(5.0, "pod-0", "user-1", 20.0, "f", origin="fallback")
    story.at(8.0, "pod_crash", "pod-0", fallback_lost=["f"] if lost else [], reason="crash")
    story.at(9.0, "pod_start", "pod-0", delivery="at_least_once", fallback=True)
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared["fallback_lost_on_crash"] == int(lost)


@pytest.mark.parametrize(
    ("delivery", "expected"), [("at_most_once", []), ("at_least_once", ["lost"])]
)
def test_a_crash_between_claim_and_fire_is_declared_only_at_most_once(
    delivery: str, expected: list[str]
) -> None:
    """At least once, the lease lapses and another claim must fire it."""
    story = Story(delivery=delivery)
    story.claim(6.0, "pod-0", story.arm(1.0, "pod-0", "user-1", 5.0, "a"), "a")
    story.at(6.2, "pod_crash", "pod-0", fallback_lost=[], reason="crash")
    story.at(7.0, "pod_start", "pod-0", delivery=delivery, fallback=True)
    verdict = story.judge(END)
    assert rules(verdict) == expected
    assert verdict.declared["crash_between_claim_and_fire"] == (0 if expected else 1)


@pytest.mark.parametrize(
    ("kind", "declared"), [("skip", "skipped_by_policy"), ("give_up", "gave_up")]
)
def test_a_timer_the_policy_skipped_or_gave_up_is_declared(kind: str, declared: str) -> None:
    story = Story()
    claim = story.claim(6.0, "pod-0", story.arm(1.0, "pod-0", "user-1", 5.0, "a"), "a")
    story.at(6.1, kind, "pod-0", **claim)
    verdict = story.judge(END)
    assert rules(verdict) == []
    assert verdict.declared[declared] == 1


@pytest.mark.parametrize(("interrupted", "expected"), [(True, []), (False, ["late"])])
def test_a_timer_a_failed_merge_left_in_limbo_waits_for_its_pod_to_merge_back(
    interrupted: bool, expected: list[str]
) -> None:
    """pod-1, cut off alone, holds a fallback timer due at 6 s; a merge attempt at 4 s took it
    out of memory and failed (`merge_interrupted`), so nobody could fire it until pod-1 merged
    back at 21 s (swarm seed 9100068). Without that row the checker cannot know: late."""
    story = Story(("pod-0", "pod-1"))
    story.outage(2.0, 20.0, pod="pod-1", kind="partial_outage", target="pod-1")
    timer = story.arm(3.0, "pod-1", "user-1", 3.0, "f", origin="fallback")
    if interrupted:
        story.at(4.5, "merge_interrupted", "pod-1", instances=["f"], elapsed=0.5)
    merged = {"sender_id": "user-1", "scheduled_time": 6.0, "version": 5, "instance": "f"}
    story.at(20.9, "reconciled", "pod-1", **merged, origin="redis", elapsed=0.001, applied=True,
             from_instance="f")  # fmt: skip
    story.fire(21.5, "pod-0", timer, "f", version=5)
    assert rules(story.judge(END)) == expected


def test_limbo_ends_when_the_pod_merges_back() -> None:
    """The excuse stops at pod-1's merge: a timer still unfired long after it is late."""
    story = Story(("pod-0", "pod-1"))
    story.outage(2.0, 20.0, pod="pod-1", kind="partial_outage", target="pod-1")
    timer = story.arm(3.0, "pod-1", "user-1", 3.0, "f", origin="fallback")
    story.at(4.5, "merge_interrupted", "pod-1", instances=["f"], elapsed=0.5)
    merged = {"sender_id": "user-1", "scheduled_time": 6.0, "version": 5, "instance": "f"}
    story.at(20.9, "reconciled", "pod-1", **merged, origin="redis", elapsed=0.001, applied=True,
             from_instance="f")  # fmt: skip
    story.fire(40.0, "pod-0", timer, "f", version=5)
    assert rules(story.judge(END)) == ["late"]
