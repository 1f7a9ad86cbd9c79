"""Prometheus metrics of a timer runner, for any application that runs one.

    from store.metrics import TimerMetrics

    metrics = TimerMetrics()                       # or TimerMetrics(registry=my_registry)
    runner = build_runner(section, fire, sink=metrics.sink)
    metrics.track(runner)                          # the gauges read the runner at scrape time
    metrics.start_loop_lag()                       # inside the running event loop

Store and service events feed the counters and the lateness histogram; the gauges are read
when Prometheus scrapes, so they are never stale. Needs `prometheus-client`
(`pip install 'timerlab[metrics]'`).

Per-pod and deployment-wide values are told apart by a `scope` label: a deployment-wide gauge
is the same on every pod, so a dashboard takes its `max`, never its `sum`.

The SLI to alert on is `timerlab_oldest_due_age_seconds`: how long the oldest timer that is
due has waited unclaimed after the last poll. `timerlab_polls_total` stalling means the poll
loop itself fails (then the last poll's age says nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from store.events import EventSink
from store.fallback import FallbackTimerStore
from store.looplag import LoopLag
from store.redis import RedisTimerStore
from store.runner import TimerRunner

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds from a timer's scheduled time to its successful callback: poll-interval scale up to
the length of an outage."""
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds of one Redis call: a loopback round trip up to a socket timeout."""


class TimerMetrics:
    """The collectors of one process's timer runner, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, prefix: str = "timerlab") -> None:
        r = registry
        self.fires = Counter(
            f"{prefix}_fires", "Callbacks finished, by result", ["result"], registry=r
        )
        self.claims = Counter(f"{prefix}_claims", "Timers this process claimed", registry=r)
        self.lateness = Histogram(
            f"{prefix}_fire_lateness_seconds",
            "Seconds from a timer's scheduled time to its successful callback",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.fallback_changes = Counter(
            f"{prefix}_fallback_changes", "Fallback activations and deactivations", ["to"],
            registry=r,
        )  # fmt: skip
        self.redis_calls = Histogram(
            f"{prefix}_redis_call_seconds",
            "Seconds of each Redis call of the store, by operation",
            ["op"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            f"{prefix}_redis_errors",
            "Redis calls that failed, by operation and error class",
            ["op", "error"],
            registry=r,
        )
        self.loop_lag = Gauge(
            f"{prefix}_event_loop_lag_seconds",
            "Worst lag of the event loop over the last second (a blocked loop delays every "
            "request and timer of the process)",
            registry=r,
        )
        self._registry = registry
        self._prefix = prefix
        self._lag: LoopLag | None = None

    # -- feeding ----------------------------------------------------------------------------

    def sink(self, kind: str, /, **fields: Any) -> None:
        """An `EventSink`: pass it to `build_runner` (or chain it with your own)."""
        if kind == "claim":
            self.claims.inc()
        elif kind == "fire" and fields.get("outcome") == "fire_done":
            result = str(fields.get("result"))
            self.fires.labels(result).inc()
            if result == "ok":
                self.lateness.observe(max(0.0, time.time() - float(fields["scheduled_time"])))
        elif kind == "fallback_activated":
            self.fallback_changes.labels("fallback").inc()
        elif kind == "fallback_deactivated":
            self.fallback_changes.labels("primary").inc()

    def chained(self, sink: EventSink) -> EventSink:
        """A sink that feeds these metrics and then `sink`."""

        def both(kind: str, /, **fields: Any) -> None:
            self.sink(kind, **fields)
            sink(kind, **fields)

        return both

    def observe_call(self, op: str, seconds: float, error: BaseException | None) -> None:
        """A `RedisTimerStore` call observer (`track` installs it)."""
        self.redis_calls.labels(op).observe(seconds)
        if error is not None:
            cause = error.__cause__ or error
            self.redis_errors.labels(op, type(cause).__name__).inc()

    def track(
        self, runner: TimerRunner, deployment_pending: Callable[[], float] | None = None
    ) -> None:
        """Report `runner`'s state at scrape time and time its Redis calls.

        `deployment_pending`, if given, counts the deployment's armed timers; a scrape must not
        wait on Redis, so pass something cached (or that gives up quickly).
        """
        store = runner.service.store
        primary = store.primary if isinstance(store, FallbackTimerStore) else store
        if isinstance(primary, RedisTimerStore):
            primary.observe_call = self.observe_call
        self._registry.register(_RunnerState(self._prefix, runner, deployment_pending))

    def start_loop_lag(self) -> LoopLag:
        """Measure the running event loop's lag into `timerlab_event_loop_lag_seconds`."""
        self._lag = LoopLag(self.loop_lag.set)
        self._lag.start()
        return self._lag

    async def stop(self) -> None:
        if self._lag is not None:
            await self._lag.stop()


class _RunnerState(Collector):
    """What a runner is doing, read when Prometheus scrapes."""

    def __init__(
        self, prefix: str, runner: TimerRunner, deployment_pending: Callable[[], float] | None
    ) -> None:
        self.prefix = prefix
        self.runner = runner
        self.deployment_pending = deployment_pending

    def collect(self) -> Iterator[Metric]:
        runner, p = self.runner, self.prefix
        store = runner.service.store
        fallback = store if isinstance(store, FallbackTimerStore) else None
        yield CounterMetricFamily(
            f"{p}_polls", "Polls of the store that succeeded", value=runner.polls
        )
        active = fallback is not None and fallback.active
        yield GaugeMetricFamily(
            f"{p}_fallback_active", "1 while the in-memory fallback serves", value=float(active)
        )
        pending = GaugeMetricFamily(
            f"{p}_pending_timers",
            "Armed timers. scope=pod: this process's fallback memory (lost if it dies); "
            "scope=deployment: the whole deployment's, the same on every pod (take max, not "
            "sum; NaN when unknown)",
            labels=["scope"],
        )
        pending.add_metric(["pod"], float(fallback.fallback_pending()) if fallback else 0.0)
        if self.deployment_pending is not None:
            pending.add_metric(["deployment"], self.deployment_pending())
        yield pending
        last = runner.last_result
        oldest = None if last is None else last.oldest_due
        yield GaugeMetricFamily(
            f"{p}_oldest_due_age_seconds",
            "Age of the oldest due timer the last poll left unclaimed (0: none)",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )
