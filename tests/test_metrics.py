"""An application scrapes the library's metrics (`store.metrics`) from its own runner."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from servers import Topology
from store.metrics import TimerMetrics
from store.runner import build_runner
from tests.conftest import redis_config

pytestmark = pytest.mark.redis


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_an_application_scrapes_fires_claims_lateness_fallback_redis_calls_and_loop_lag(
    redis_standalone: Topology,
) -> None:
    registry = CollectorRegistry()
    metrics = TimerMetrics(registry)
    fired: list[str] = []

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        fired.append(sender_id)

    section = redis_config(redis_standalone, fallback=True, poll_interval=0.05)
    runner = build_runner(section, fire, sink=metrics.sink)
    metrics.track(runner, deployment_pending=lambda: 3.0)
    metrics.start_loop_lag()
    await runner.start()
    try:
        await runner.service.schedule_timer("u1", "s", 0.01)
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.1)  # one loop-lag window
        samples = _samples(registry)
    finally:
        await runner.stop()
        await metrics.stop()
        runner.service.store.close()
    assert fired == ["u1"]
    assert samples[("timerlab_fires_total", (("result", "ok"),))] == 1
    assert samples[("timerlab_claims_total", ())] == 1
    assert samples[("timerlab_fire_lateness_seconds_count", ())] == 1
    assert samples[("timerlab_polls_total", ())] >= 1
    assert samples[("timerlab_fallback_active", ())] == 0
    assert samples[("timerlab_oldest_due_age_seconds", ())] == 0
    assert samples[("timerlab_pending_timers", (("scope", "pod"),))] == 0
    assert samples[("timerlab_pending_timers", (("scope", "deployment"),))] == 3
    assert samples[("timerlab_redis_call_seconds_count", (("op", "store"),))] == 1
    assert samples[("timerlab_redis_call_seconds_count", (("op", "claim"),))] >= 1
    assert 0 <= samples[("timerlab_event_loop_lag_seconds", ())] < 0.5


async def test_redis_errors_are_counted_by_operation_and_class(
    redis_standalone: Topology,
) -> None:
    registry = CollectorRegistry()
    metrics = TimerMetrics(registry)

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        return None

    section = redis_config(redis_standalone, fallback=True, port=1, socket_timeout=0.2)
    runner = build_runner(section, fire, sink=metrics.sink)
    metrics.track(runner)
    started = time.monotonic()
    await runner.service.schedule_timer("u1", "s", 60)  # refused: lands in the fallback
    assert time.monotonic() - started < 1.0
    samples = _samples(registry)
    runner.service.store.close()
    errors = {k: v for k, v in samples.items() if k[0] == "timerlab_redis_errors_total"}
    assert errors == {
        ("timerlab_redis_errors_total", (("error", "ConnectionError"), ("op", "store"))): 1.0
    }
    assert samples[("timerlab_fallback_active", ())] == 1
    assert samples[("timerlab_pending_timers", (("scope", "pod"),))] == 1
    assert samples[("timerlab_fallback_changes_total", (("to", "fallback"),))] == 1
