"""A pod's `/metrics` during the start-up recovery of a backlog, on a real Redis.

The SLI an operator alerts on, `timerlab_oldest_due_age_seconds`, must show the backlog while
recovery works it off (it read 0 there when the runner's recovery kept its results to itself).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from loadtest.pod import Pod, PodOptions
from servers import Topology
from store import RedisTimerStore, create_timer_store
from tests.conftest import redis_config

pytestmark = pytest.mark.redis


async def test_oldest_due_age_is_reported_while_recovering_a_backlog(
    redis_standalone: Topology, tmp_path: Path
) -> None:
    section = redis_config(redis_standalone, batch_size=20, recovery_rate=100, fallback=True)
    writer = create_timer_store({**section, "fallback": False})
    assert isinstance(writer, RedisTimerStore)
    due = time.time() - 60
    await asyncio.gather(*(writer.store_timer(f"u{i}", "s", due + i / 100) for i in range(1000)))
    await writer.aclose()
    config = tmp_path / "endpoints.yml"
    config.write_text(yaml.safe_dump({"timer_store": section}))
    options = PodOptions(
        name="pod-0",
        port=0,
        config=config,
        history=tmp_path / "pod-0.csv",
        receiver="http://127.0.0.1:9",  # nothing listens: fires fail and are leased again
    )
    pod = Pod(options)
    pod._client = aiohttp.ClientSession()
    try:
        await pod.runner.start()
        ages = []
        for _ in range(20):
            await asyncio.sleep(0.1)
            text = (await pod._metrics(None)).text  # type: ignore[arg-type]
            assert text is not None
            line = next(
                x for x in text.splitlines() if x.startswith("timerlab_oldest_due_age_seconds ")
            )
            ages.append(float(line.split()[1]))
        assert min(ages) >= 55, ages  # the oldest due timer has waited about a minute
    finally:
        await pod.runner.stop()
        await pod._client.close()
        pod.history.close()
