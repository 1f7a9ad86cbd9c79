"""The Redis password never leaks: not into logs, stdout/stderr, exception text, reprs, the
topology state file, server logs or process arguments.

The scenario runs the paths that print things: a healthy store that writes, claims, checks and
notices a data loss; stores that fail to connect or authenticate with the password set; the
fallback activating and closing with pending timers; a runner polling a dead Redis. Everything
any of it printed, logged or raised is then searched for the password.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from servers import STATE_FILE, StandaloneTopology, Topology, free_port
from store import EndpointConfig, FallbackTimerStore, SessionTimerStore, create_timer_store
from store.errors import TimerStoreConfigError
from store.redis import RedisTimerStore
from store.redis.settings import RedisSettings
from store.runner import build_runner
from tests.conftest import _start, unique_prefix

pytestmark = pytest.mark.redis

SECRET = "s3cr3t-P4ss"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topology = StandaloneTopology(tmp_path_factory.mktemp("secrets"), password=SECRET)
    _start(topology)
    yield topology
    topology.stop()


def section(port: int, **values: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "type": "redis",
        "host": "127.0.0.1",
        "port": port,
        "db": 0,
        "password": SECRET,
        "key_prefix": unique_prefix(),
        "socket_timeout": 0.3,
        "probe_interval": 0.05,
    }
    config.update(values)
    return config


def chain(error: BaseException) -> list[str]:
    """The printed traceback, and str, repr and args of the exception and all chained to it."""
    texts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *(repr(arg) for arg in current.args)]
        pending += [current.__cause__, current.__context__]
    return texts


async def close(store: SessionTimerStore) -> None:
    primary = store.primary if isinstance(store, FallbackTimerStore) else store
    if isinstance(primary, RedisTimerStore):
        await primary.aclose()
    else:
        store.close()


async def healthy_store(topology: Topology, seen: list[str]) -> None:
    store = create_timer_store(section(topology.nodes[0].port))
    assert isinstance(store, FallbackTimerStore)
    seen += [repr(store), repr(store.primary), repr(store.endpoint_config)]
    for index in range(5):
        await store.store_timer(f"user-{index}", "s", T0 + index, {"note": "hello"})
    assert await store.get_timer("user-1") is not None
    assert len(await store.get_expired_timers(T0 + 10)) == 5
    batch = await store.claim_due(T0 + 10, limit=10, lease_until=T0 + 40)
    await store.complete(batch.claims)
    primary = store.primary
    assert isinstance(primary, RedisTimerStore)
    seen += [repr(primary.settings), str(primary.settings), primary.settings.describe()]
    await primary.check()
    with topology.client(topology.nodes[0]) as admin:
        admin.flushall()  # the store must notice (and log) the lost data
    await store.store_timer("user-9", "s", T0 + 9)
    assert primary.data_losses == 1
    await close(store)


async def failing_stores(topology: Topology, seen: list[str]) -> None:
    """Unreachable Redis, and a server that refuses the credentials: raised, then fallen back."""
    dead = free_port()
    refused = section(topology.nodes[0].port, username="nobody")
    for config in (section(dead), refused):
        strict = create_timer_store({**config, "fallback": False})
        with pytest.raises(ConnectionError) as caught:
            await strict.store_timer("user-1", "s", T0)
        seen += chain(caught.value)
        with pytest.raises(ConnectionError) as caught:
            await strict.ping()  # type: ignore[attr-defined]
        seen += chain(caught.value)
        await close(strict)

        lenient = create_timer_store(config)
        assert isinstance(lenient, FallbackTimerStore)
        await lenient.store_timer("user-1", "s", T0)  # activates the fallback, logs why
        assert lenient.active
        await asyncio.sleep(0.06)
        await lenient.get_expired_timers(T0 + 10)  # a failing probe
        assert not await lenient.drain()
        lenient.close()  # logs the pending fallback timers
        await close(lenient)


async def runner_against_a_dead_redis(seen: list[str]) -> None:
    async def fire(*_: Any, **__: Any) -> None:
        return None

    runner = build_runner(section(free_port(), poll_interval=0.05), fire)
    await runner.start()
    await asyncio.sleep(0.3)
    await runner.stop()
    seen.append(repr(runner.service.store))


async def test_the_password_appears_in_no_log_output_error_or_repr(
    guarded: Topology, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with capture_logs() as logs:
        await healthy_store(guarded, seen)
        await failing_stores(guarded, seen)
        await runner_against_a_dead_redis(seen)
    # Once more outside capture_logs, so structlog's default renderer writes to stdout.
    await failing_stores(guarded, seen)

    events = {entry["event"] for entry in logs}
    assert {
        "timer_store.redis.data_loss_detected",
        "timer_store.fallback.activated",
        "timer_store.fallback.closed_with_pending",
    } <= events, "the scenario must reach the code paths that log"
    assert any("invalid username-password pair" in text for text in seen)

    config = EndpointConfig.from_dict(section(guarded.nodes[0].port))
    settings = RedisSettings.from_endpoint_config(config)
    seen += [repr(config), str(config), repr(settings), str(settings), settings.describe()]
    captured = capsys.readouterr()
    outputs = {
        "structlog events": "\n".join(repr(entry) for entry in logs),
        "stdout": captured.out,
        "stderr": captured.err,
        "stdlib logging": caplog.text,
        "errors and reprs": "\n".join(seen),
    }
    assert "fallback.activated" in captured.out  # the second round really printed
    leaks = [name for name, text in outputs.items() if SECRET in text]
    assert leaks == []


def test_config_errors_name_the_bad_key_without_echoing_the_password() -> None:
    for bad in ([SECRET], {"value": SECRET}):
        config = EndpointConfig(type="redis", password=bad)
        assert SECRET not in repr(config)
        with pytest.raises(TimerStoreConfigError) as caught:
            create_timer_store(config)
        assert caught.value.key == "password"
        assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"url": f"redis://:{SECRET}@127.0.0.1:6379"},
        {"host": f"redis://default:{SECRET}@127.0.0.1"},
        {"deployment_mode": "sentinel", "endpoints": [f"redis://:{SECRET}@127.0.0.1:26379"]},
    ],
    ids=["url", "host", "endpoints"],
)
def test_a_url_with_credentials_is_never_echoed(values: dict[str, Any]) -> None:
    config = EndpointConfig(type="redis", **values)
    with pytest.raises(TimerStoreConfigError) as caught:
        create_timer_store(config)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(config)


def test_topology_state_logs_and_process_arguments_hold_no_password(guarded: Topology) -> None:
    run_dir = guarded.run_dir
    state = (run_dir / STATE_FILE).read_text()
    assert SECRET not in state
    assert '"password_set": true' in state
    for node in guarded.nodes:
        assert node.pid is not None
        assert SECRET.encode() not in Path(f"/proc/{node.pid}/cmdline").read_bytes()
        for log in ("redis.log", "stdout.log"):
            path = node.data_dir / log
            if path.exists():
                assert SECRET not in path.read_text(errors="replace"), path
