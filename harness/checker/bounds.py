"""The bounds a run is judged against, each printed as its formula, its terms and its total.

Derived from the run's parameters and from what its history shows about load (the backlog an
outage left, the largest journal a pod merged, how many timers a five-method store claimed one
by one), never from the verdict: they are fixed before any rule runs.
docs/architecture.md, section 5, lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.checker.model import Model
from harness.checker.reach import Reach
from record.runinfo import RunInfo
from store.fallback import RECONCILE_CHUNK

SCRIPT_ROUND_TRIPS = 3
"""Round trips of one script call on a Redis that lost its script cache (a restart or a
failover): EVALSHA meets NOSCRIPT, then SCRIPT LOAD and EVALSHA again (one round trip where
they are pipelined together, two on a cluster client)."""

PROBE_ROUND_TRIPS = 3
"""Round trips of the probe that ends an outage: the outage closed the pool's connections, so
the PING waits for a new connection's TCP handshake and its Redis handshake (HELLO, or CLIENT
SETINFO and SELECT pipelined) first."""


@dataclass(frozen=True)
class Bound:
    """A bound printed as its formula, its values and its total."""

    name: str
    formula: str
    terms: tuple[tuple[str, float], ...]

    @property
    def value(self) -> float:
        return sum(value for _, value in self.terms)

    def describe(self) -> str:
        values = " + ".join(f"{value:.3f}" for _, value in self.terms)
        return f"{self.name} = {self.formula} = {values} = {self.value:.3f} s"


@dataclass(frozen=True)
class Bounds:
    """The three bounds of one run."""

    lateness: Bound
    activation: Bound
    deactivation: Bound

    def all(self) -> list[Bound]:
        return [self.lateness, self.activation, self.deactivation]


def derive_bounds(model: Model) -> Bounds:
    """The bounds of the run in `model`.

    The backlog N is counted over the stretches when no pod could reach Redis up to the end
    of each fault plus the hold-back, not the merge after it (`Reach(model, 0.0)`): the time
    a merge takes is excused from lateness on its own, and the timers that come due during it
    are a merge's worth at the recovery rate (milliseconds at the default rate).
    """
    info = model.info
    slow = model.slowest_answer()
    one_by_one = max(
        (
            r["d"].get("batch", 0)
            for r in model.rows
            if r["kind"] == "claim" and r["origin"] == "custom"
        ),
        default=0,
    )
    journal = max(
        (
            int(r["d"].get("applied", 0)) + int(r["d"].get("skipped", 0))
            for r in model.rows
            if r["kind"] == "fallback_deactivated"
        ),
        default=0,
    )
    backlog = Reach(model, 0.0).peak_backlog()
    return Bounds(
        lateness=lateness_bound(info, backlog, slow, one_by_one),
        activation=activation_bound(info, slow),
        deactivation=deactivation_bound(info, slow, journal),
    )


def poll_period(info: RunInfo) -> float:
    """The longest sleep between two polls: P(1+j)."""
    return info.service.poll_interval * (1 + info.service.poll_jitter)


def lateness_bound(info: RunInfo, backlog: int, slow: float, one_by_one: int) -> Bound:
    """How late a fire may be once a healthy pod can reach its timer.

    `one_by_one`: the largest batch a five-method store had to claim timer by timer (a
    conditional delete each); 0 for stores that claim a batch in one call.
    """
    return Bound(
        "lateness bound",
        "P(1+j) + S + 4λ + 2σ + f + p + τ + N/r + B(2λ+σ)",
        (
            ("poll interval P(1+j)", poll_period(info)),
            ("clock skew S", info.max_skew),
            ("round trips 4λ", 4 * info.latency),
            ("slow replies 2σ", 2 * slow),
            ("fire duration f", info.fire_duration),
            ("probe interval p", info.service.probe_interval),
            ("socket timeout τ", info.socket_timeout),
            ("backlog N/r", backlog / info.service.recovery_rate),
            ("claims one by one B(2λ+σ)", one_by_one * (2 * info.latency + slow)),
        ),
    )


def activation_bound(info: RunInfo, slow: float) -> Bound:
    """How soon a pod must notice that Redis is gone: its current call's slow reply, one
    poll interval, then one socket timeout."""
    return Bound(
        "fallback activation bound",
        "σ + P(1+j) + τ + 2λ",
        (
            ("slow reply σ", slow),
            ("poll interval P(1+j)", poll_period(info)),
            ("socket timeout τ", info.socket_timeout),
            ("round trip 2λ", 2 * info.latency),
        ),
    )


def merge_round_trips(journal: int) -> int:
    """Sequential round trips from a pod's probe to its deactivation: the probe, releasing the
    leases of fires that ended during the outage, then each chunk of the journal (each a
    script call that may meet an empty script cache)."""
    chunks = max(1, math.ceil(journal / RECONCILE_CHUNK))  # journal entries per round trip
    return PROBE_ROUND_TRIPS + SCRIPT_ROUND_TRIPS * (1 + chunks)


def deactivation_bound(info: RunInfo, slow: float, journal: int) -> Bound:
    """How soon after Redis returns a pod must have merged its outage back.

    Its next probe comes at its first poll once a probe interval has passed since the last
    failed one, at most p + P(1+j) after Redis returns; then the merge's round trips.
    """
    trips = merge_round_trips(journal)
    return Bound(
        "fallback deactivation bound",
        "p + P(1+j) + R(2λ+σ)",
        (
            ("probe interval p", info.service.probe_interval),
            ("poll interval P(1+j)", poll_period(info)),
            (f"merge round trips R={trips}", trips * (2 * info.latency + slow)),
        ),
    )
