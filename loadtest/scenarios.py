"""The load scenarios: which faults each runs, where it may run, and the pods' timer settings.

Standard library only, on purpose: Locust's process imports this module (for the shape names),
and `run.py` checks options against it before anything is started.
"""

from __future__ import annotations

from dataclasses import dataclass

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
TOPOLOGIES = ("standalone", "sentinel", "cluster")

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


@dataclass(frozen=True)
class Fault:
    """One fault of a scenario: what, when (seconds after the load starts), for how long.

    `hold` is how long the fault is held (Redis down, paused, a pod cut off or dead); for a
    failover it is how long the deployment runs on the promoted node before the old one returns.
    """

    kind: str
    at: float
    hold: float
    pod: int | None = None


def fault_plan(scenario: str, duration: float, pods: int) -> tuple[Fault, ...]:
    """The faults of `scenario` in a load of `duration` seconds over `pods` pods."""
    at = round(FAULT_AT * duration, 3)
    victim = 1 if pods > 1 else 0
    plans: dict[str, tuple[Fault, ...]] = {
        "steady": (),
        "redis-restart": (Fault("redis_restart", at, 3.0),),
        "redis-hang": (Fault("redis_hang", at, 4.0),),
        "pod-partition": (Fault("pod_partition", at, 6.0, pod=victim),),
        "sentinel-failover": (Fault("sentinel_failover", at, 3.0),),
        "cluster-failover": (Fault("cluster_failover", at, 3.0),),
        "pod-kill": (Fault("pod_kill", at, 3.0, pod=victim),),
    }
    return plans[scenario]


@dataclass(frozen=True)
class TimerSettings:
    """The service settings every pod of a run gets, and the checker's bounds are made of.

    The lease is short (a killed pod's claims are re-fired within the quiet period) and must
    exceed `fire_timeout`; the receiver timeout bounds how long one fire can take.
    """

    poll_interval: float = 1.0
    poll_jitter: float = 0.1
    lease_seconds: float = 5.0
    fire_timeout: float = 2.0
    probe_interval: float = 1.0
    recovery_rate: float = 1000.0
    socket_timeout: float = 0.5
    receiver_timeout: float = 1.0

    def service_config(self) -> dict[str, float]:
        """The keys of the `timer_store` section that carry these settings."""
        return {
            "poll_interval": self.poll_interval,
            "poll_jitter": self.poll_jitter,
            "lease_seconds": self.lease_seconds,
            "fire_timeout": self.fire_timeout,
            "probe_interval": self.probe_interval,
            "recovery_rate": self.recovery_rate,
            "socket_timeout": self.socket_timeout,
        }

    def default_quiet_period(self) -> float:
        """After the load: the last armed timers come due, a lapsed lease re-fires, margin."""
        return SESSION_TIMEOUT + self.lease_seconds + 5.0


ALLOW_DEGRADED = "X-Allow-Degraded"
"""Request header a load balancer sets when no pod reaches Redis: keep the write in memory."""
REROUTED = "(rerouted)"
"""Suffix of the Locust name of an attempt that failed and was retried on another pod."""
