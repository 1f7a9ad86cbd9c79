"""`endpoints.yml`: the documentation's example loads and works verbatim; `${VAR}`; custom
stores get their extra keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers import StandaloneTopology
from store import (
    EndpointConfig,
    InMemoryTimerStore,
    SessionTimer,
    TimerStoreConfigError,
    create_timer_store,
    load_endpoint_config,
)
from store.fallback import FallbackTimerStore
from store.redis import RedisTimerStore
from tests.conftest import _start

T0 = 1_700_000_000.0

# The documentation's example, with its placeholders filled in and nothing else changed.
DOCUMENTED = """\
timer_store:
  type: "redis"
  host: 127.0.0.1
  port: {port}
  password: {password}
  db: 0
  key_prefix: myassistant
  # high availability parameters
  deployment_mode: standard
  endpoints: []
  sentinel_service: mymaster
"""


@pytest.fixture
def protected(tmp_path: Path) -> StandaloneTopology:
    topology = StandaloneTopology(tmp_path / "redis", password="docs-example-pw")
    _start(topology)
    yield topology  # type: ignore[misc]
    topology.stop()


@pytest.mark.redis
async def test_the_documented_example_loads_and_works_verbatim(
    protected: StandaloneTopology, tmp_path: Path
) -> None:
    port = protected.timer_store_config()["port"]
    path = tmp_path / "endpoints.yml"
    path.write_text(DOCUMENTED.format(port=port, password="docs-example-pw"))
    config = load_endpoint_config(path)
    assert config is not None
    assert config.type == "redis"
    store = create_timer_store(config)
    assert isinstance(store, FallbackTimerStore)
    primary = store.primary
    assert isinstance(primary, RedisTimerStore)
    assert primary.settings.key_prefix == "myassistant"
    await store.store_timer("user-1", "s1", T0, {"k": "v"})
    assert await store.get_timer("user-1") == SessionTimer("user-1", "s1", T0, {"k": "v"})
    assert [t.sender_id for t in await store.get_expired_timers(T0)] == ["user-1"]
    assert await store.delete_timer("user-1", only_if_scheduled_time=T0) is True
    assert not store.active  # everything went to Redis, not to the fallback
    keys = protected.client(protected.nodes[0]).keys("*myassistant*")
    assert keys  # the prefix really is in the key names
    await store.aclose()


def test_env_references_are_expanded_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "endpoints.yml"
    path.write_text(
        'timer_store:\n  type: redis\n  host: ${TIMER_HOST}\n  password: "${TIMER_PW}"\n'
    )
    monkeypatch.setenv("TIMER_HOST", "redis.internal")
    monkeypatch.setenv("TIMER_PW", "s3cret")
    config = load_endpoint_config(path)
    assert config is not None
    assert config.kwargs["host"] == "redis.internal"
    assert "s3cret" not in repr(config)
    monkeypatch.delenv("TIMER_PW")
    with pytest.raises(TimerStoreConfigError, match="TIMER_PW") as caught:
        load_endpoint_config(path)
    assert caught.value.key == "password"


def test_no_section_means_the_in_memory_default(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yml"
    path.write_text("action_endpoint:\n  url: http://localhost:5055/webhook\n")
    assert load_endpoint_config(path) is None
    assert isinstance(create_timer_store(load_endpoint_config(path)), InMemoryTimerStore)
    assert isinstance(create_timer_store(None), InMemoryTimerStore)
    assert isinstance(create_timer_store({"type": "in_memory"}), InMemoryTimerStore)


def test_a_custom_store_gets_the_extra_keys_in_kwargs(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yml"
    path.write_text(
        "timer_store:\n"
        "  type: tests.fixtures.broken_stores.DictStore\n"
        "  a_parameter: a value\n"
        "  another_parameter: another value\n"
    )
    store = create_timer_store(load_endpoint_config(path))
    assert type(store).__name__ == "DictStore"
    assert store.endpoint_config is not None
    assert store.endpoint_config.kwargs == {
        "a_parameter": "a value",
        "another_parameter": "another value",
    }


def test_an_existing_store_and_a_dict_are_accepted() -> None:
    store = InMemoryTimerStore()
    assert create_timer_store(store) is store
    built = create_timer_store({"type": "redis", "host": "127.0.0.1", "fallback": False})
    assert isinstance(built, RedisTimerStore)
    assert isinstance(create_timer_store(EndpointConfig(type="redis")), FallbackTimerStore)


def test_rasa_class_names_are_importable() -> None:
    from store import InMemorySessionTimerStore, RedisSessionTimerStore

    assert InMemorySessionTimerStore is InMemoryTimerStore
    assert RedisSessionTimerStore is RedisTimerStore
