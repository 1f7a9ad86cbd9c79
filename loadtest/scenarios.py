"""The load scenarios: which faults each runs, where it may run, and the pods' timer settings.

Light on purpose (its imports are the standard library, `record.faults` and
`store.options`): Locust's process imports this module,
and `run.py` checks options against it before anything is started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from record.faults import Fault
from store.options import ServiceSettings

SCENARIOS = (
    "steady",
    "redis-restart",
    "redis-hang",
    "pod-partition",
    "sentinel-failover",
    "cluster-failover",
    "pod-kill",
)
SHAPES = ("steady", "ramp", "spike", "soak")

ONLY_ON: dict[str, tuple[str, ...]] = {
    # A restart or a SIGSTOP of a sentinel master would start a failover: another scenario.
    "redis-restart": ("standalone",),
    "redis-hang": ("standalone",),
    # Only standalone pods reach Redis through their own proxy: sentinels hand out the real
    # master address and a cluster client learns node addresses from CLUSTER SLOTS.
    "pod-partition": ("standalone",),
    "sentinel-failover": ("sentinel",),
    "cluster-failover": ("cluster",),
}
"""Scenarios that need one topology."""

MIN_PODS = {"pod-partition": 2, "pod-kill": 2}
"""A pod fault needs another pod that keeps serving, or the run measures nothing but downtime."""

SESSION_TIMEOUT = 8.0
"""Inactivity timeout of a conversation: above the longest think time (THINK_TIME), so a timer
never comes due while its user is still talking; it fires only once the user has left."""

THINK_TIME = (1.0, 5.0)
"""Seconds a Locust user waits between two messages."""

FAULT_AT = 0.4
"""Faults start at this fraction of the load, once every user is talking."""

MIN_FAULT_RUN = 15.0
"""Shortest load (seconds) in which a fault still starts after ramp-up and ends before the end."""


def fault_plan(scenario: str, duration: float, pods: int) -> tuple[Fault, ...]:
    """The faults of `scenario` in a load of `duration` seconds over `pods` pods, in the
    vocabulary both drivers record (`record.faults`); `duration` of a fault is how long it is
    held (for a failover: how long the deployment runs on the promoted node before the old one
    returns)."""
    at = round(FAULT_AT * duration, 3)
    victim = 1 if pods > 1 else 0
    plans: dict[str, tuple[Fault, ...]] = {
        "steady": (),
        "redis-restart": (Fault("redis_restart", at, 3.0),),
        "redis-hang": (Fault("redis_outage", at, 4.0, mode="pause"),),
        "pod-partition": (Fault("partial_outage", at, 6.0, pod=victim),),
        "sentinel-failover": (Fault("redis_outage", at, 3.0, mode="failover"),),
        "cluster-failover": (Fault("redis_outage", at, 3.0, mode="failover"),),
        "pod-kill": (Fault("pod_crash", at, 3.0, pod=victim),),
    }
    return plans[scenario]


@dataclass(frozen=True)
class LoadSettings:
    """What every pod of a run gets, and the checker's bounds are made of.

    The lease is short (a killed pod's claims are re-fired within the quiet period) and must
    exceed `fire_timeout`; the receiver timeout bounds how long one fire can take.
    """

    service: ServiceSettings = field(
        default_factory=lambda: ServiceSettings(lease_seconds=5.0, fire_timeout=2.0)
    )
    socket_timeout: float = 0.5
    receiver_timeout: float = 1.0

    def section(self) -> dict[str, Any]:
        """The keys of the `timer_store` section that carry these settings."""
        return {**self.service.to_mapping(), "socket_timeout": self.socket_timeout}

    def default_quiet_period(self) -> float:
        """After the load: the last armed timers come due, a lapsed lease re-fires, margin."""
        return SESSION_TIMEOUT + self.service.lease_seconds + 5.0


ALLOW_DEGRADED = "X-Allow-Degraded"
"""Request header a load balancer sets when no pod reaches Redis: keep the write in memory."""
REROUTED = "(rerouted)"
"""Suffix of the Locust name of an attempt that failed and was retried on another pod."""
