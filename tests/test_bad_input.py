"""The bad-input matrix: every bad argument or setting is refused precisely, and harmlessly.

Two tables. `STORE_ROWS` are calls with a bad argument; each must raise the exact exception
type naming the argument, write nothing (the due set and, on Redis, the whole keyspace are
unchanged) and leave the store usable. They run on the in-memory store, a Redis store, and a
Redis store behind the fallback (which must pass validation errors through, never treat them
as an outage). `CONFIG_ROWS` are `timer_store` sections that never reach a server: each must
raise `TimerStoreConfigError` naming the key, and the same section in an endpoints file makes
`timerlab config check` exit 2 with one line and no traceback.

Unusual but valid sender ids (braces, colons, non-BMP characters) must round-trip, also on a
cluster, where a brace in a key name would change the hash-tag slot.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from redis.cluster import RedisCluster

from harness.cli import main as timerlab
from servers import ClusterTopology, StandaloneTopology
from store import FallbackTimerStore, SessionTimerStore, create_timer_store
from store.base import aclose_store
from store.endpoint import load_endpoint_config
from store.errors import TimerStoreConfigError
from store.redis import RedisTimerStore
from tests.conftest import redis_config

T0 = 1_700_000_000.0
FAR_FUTURE = 4_000_000_000.0
Figure = Callable[[str, float, str], None]
Call = Callable[[SessionTimerStore], Awaitable[Any]]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


@dataclass(frozen=True)
class StoreRow:
    """One bad call: what it does, what it must raise, and the argument it must name."""

    name: str
    call: Call
    error: type[Exception]
    field: str


def _store(sender: Any = "bad", when: Any = T0 + 60, metadata: Any = None) -> Call:
    return lambda s: s.store_timer(sender, "session", when, metadata)


def _row(name: str, call: Call, error: type[Exception], field: str) -> StoreRow:
    return StoreRow(name, call, error, field)


STORE_ROWS: list[StoreRow] = [
    # sender ids, through every method that takes one
    _row("sender empty", _store(sender=""), ValueError, "sender_id"),
    _row("sender 64 KiB", _store(sender="x" * 65536), ValueError, "sender_id"),
    _row("sender NUL", _store(sender="a\x00b"), ValueError, "sender_id"),
    _row("sender lone surrogate", _store(sender="\ud800"), ValueError, "sender_id"),
    _row("sender int", _store(sender=42), TypeError, "sender_id"),
    _row("sender None", _store(sender=None), TypeError, "sender_id"),
    _row("get: sender empty", lambda s: s.get_timer(""), ValueError, "sender_id"),
    _row("get: sender NUL", lambda s: s.get_timer("\x00"), ValueError, "sender_id"),
    _row("get: sender bytes", lambda s: s.get_timer(b"abc"), TypeError, "sender_id"),
    _row("delete: sender empty", lambda s: s.delete_timer(""), ValueError, "sender_id"),
    _row("delete: surrogate", lambda s: s.delete_timer("\udfff"), ValueError, "sender_id"),
    _row("delete: sender int", lambda s: s.delete_timer(7), TypeError, "sender_id"),
    _row("session id NUL", lambda s: s.store_timer("ok", "\x00", T0), ValueError, "session_id"),
    _row("session id int", lambda s: s.store_timer("ok", 5, T0), TypeError, "session_id"),
    # times
    _row("time NaN", _store(when=math.nan), ValueError, "scheduled_time"),
    _row("time +inf", _store(when=math.inf), ValueError, "scheduled_time"),
    _row("time -inf", _store(when=-math.inf), ValueError, "scheduled_time"),
    _row("time negative", _store(when=-1.0), ValueError, "scheduled_time"),
    _row("time past 9999", _store(when=253402300800.0), ValueError, "scheduled_time"),
    _row("time string", _store(when="soon"), TypeError, "scheduled_time"),
    _row("time bool", _store(when=True), TypeError, "scheduled_time"),
    _row(
        "claim time NaN",
        lambda s: s.delete_timer("canary", only_if_scheduled_time=math.nan),
        ValueError,
        "only_if_scheduled_time",
    ),
    _row("cutoff +inf", lambda s: s.get_expired_timers(math.inf), ValueError, "cutoff_time"),
    _row("cutoff string", lambda s: s.get_expired_timers("now"), TypeError, "cutoff_time"),
    # metadata
    _row("metadata object()", _store(metadata={"x": object()}), TypeError, "metadata"),
    _row("metadata set", _store(metadata={"x": {1, 2}}), TypeError, "metadata"),
    _row("metadata 1 MiB", _store(metadata={"blob": "x" * (1 << 20)}), ValueError, "metadata"),
    _row("metadata depth 100", _store(metadata=_nested(100)), ValueError, "metadata"),
    _row("metadata int keys", _store(metadata={1: "a"}), TypeError, "metadata"),
    _row("metadata tuple keys", _store(metadata={"a": {(1, 2): 3}}), TypeError, "metadata"),
    _row("metadata NaN", _store(metadata={"x": math.nan}), TypeError, "metadata"),
    _row("metadata a list", _store(metadata=["a"]), TypeError, "metadata"),
]

VALID_ODD_IDS = ["{", "}", ":", "{a}:{b}", "{timer:0}", "😀", "𝄞", "a|b|c", "🙂{x}:😀"]


@dataclass(frozen=True)
class ConfigRow:
    """One bad `timer_store` section and the key its error must name."""

    name: str
    section: dict[str, Any]
    key: str


CONFIG_ROWS: list[ConfigRow] = [
    ConfigRow("unknown type", {"type": "mongo"}, "type"),
    ConfigRow("empty type", {"type": ""}, "type"),
    ConfigRow(
        "unknown deployment_mode", {"type": "redis", "deployment_mode": "galaxy"}, "deployment_mode"
    ),
    ConfigRow(
        "sentinel without endpoints", {"type": "redis", "deployment_mode": "sentinel"}, "endpoints"
    ),
    ConfigRow(
        "endpoint without port",
        {"type": "redis", "deployment_mode": "sentinel", "endpoints": ["localhost"]},
        "endpoints[0]",
    ),
    ConfigRow(
        "endpoint port not a number",
        {"type": "redis", "deployment_mode": "sentinel", "endpoints": ["h:1", "host:notaport"]},
        "endpoints[1]",
    ),
    ConfigRow(
        "endpoints a number",
        {"type": "redis", "deployment_mode": "sentinel", "endpoints": 42},
        "endpoints",
    ),
    ConfigRow(
        "endpoint a number",
        {"type": "redis", "deployment_mode": "cluster", "endpoints": [42]},
        "endpoints[0]",
    ),
    ConfigRow(
        "endpoint port 0",
        {"type": "redis", "deployment_mode": "cluster", "endpoints": ["h:0"]},
        "endpoints[0]",
    ),
    ConfigRow("port 0", {"type": "redis", "port": 0}, "port"),
    ConfigRow("port 70000", {"type": "redis", "port": 70000}, "port"),
    ConfigRow("port a string", {"type": "redis", "port": "sixty"}, "port"),
    ConfigRow("key_prefix my-app", {"type": "redis", "key_prefix": "my-app"}, "key_prefix"),
    ConfigRow("key_prefix a:b", {"type": "redis", "key_prefix": "a:b"}, "key_prefix"),
    ConfigRow("key_prefix empty", {"type": "redis", "key_prefix": ""}, "key_prefix"),
    ConfigRow("key_prefix braces", {"type": "redis", "key_prefix": "{x}"}, "key_prefix"),
    ConfigRow("url and host", {"type": "redis", "url": "localhost", "host": "localhost"}, "url"),
    ConfigRow("module does not import", {"type": "no_such_pkg.stores.Store"}, "type"),
    ConfigRow("class missing in module", {"type": "store.memory.NoSuchStore"}, "type"),
    ConfigRow("class not a store", {"type": "collections.OrderedDict"}, "type"),
    ConfigRow("not a class", {"type": "store.factory.create_timer_store"}, "type"),
]

NOT_A_MAPPING = {"a list": "- a\n- b\n", "a string": "just text\n", "a number": "42\n"}
"""Endpoints files whose top level is not a mapping; the error names the file."""


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI configures structlog for its process; put the test session's set-up back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


REDIS = pytest.mark.redis


@pytest.fixture(
    params=[
        "memory",
        pytest.param("standalone", marks=REDIS),
        pytest.param("standalone+fallback", marks=REDIS),
    ]
)
async def backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[SessionTimerStore, Callable[[], Any]]]:
    """A store, and a function that fingerprints everything its backend holds."""
    if request.param == "memory":
        store = create_timer_store({"type": "in_memory"})
        yield store, lambda: None
        store.close()
        return
    topology: StandaloneTopology = request.getfixturevalue("redis_standalone")
    config = redis_config(topology, fallback=request.param.endswith("fallback"))
    store = create_timer_store(config)
    expected = FallbackTimerStore if request.param.endswith("fallback") else RedisTimerStore
    assert isinstance(store, expected)
    admin = topology.client(topology.nodes[0])
    pattern = f"{{{config['key_prefix']}:timer:*"

    def keyspace() -> tuple[int, dict[str, Any]]:
        keys = sorted(admin.keys(pattern))
        with admin.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.dump(key)
            dumps = pipe.execute()
        return admin.dbsize(), dict(zip(keys, dumps, strict=True))

    yield store, keyspace
    await store.aclose()
    admin.close()


# -- the store table ------------------------------------------------------------------------


async def test_bad_store_arguments_are_refused_precisely_and_write_nothing(
    backend: tuple[SessionTimerStore, Callable[[], Any]],
    request: pytest.FixtureRequest,
    report_figure: Figure,
) -> None:
    store, keyspace = backend
    await store.store_timer("canary", "s1", T0, {"k": "v"})
    expired_before = await store.get_expired_timers(FAR_FUTURE)
    assert [t.sender_id for t in expired_before] == ["canary"]
    failures = []
    for row in STORE_ROWS:
        before = keyspace()
        try:
            await row.call(store)
        except Exception as exc:
            problem = None
            if type(exc).__module__.startswith("redis"):
                problem = f"leaked a client error {type(exc).__name__}: {exc}"
            elif not isinstance(exc, row.error):
                problem = f"raised {type(exc).__name__} ({exc}), expected {row.error.__name__}"
            elif getattr(exc, "field", None) != row.field or row.field not in str(exc):
                problem = f"named {getattr(exc, 'field', None)!r} ({exc}), not {row.field!r}"
        else:
            problem = f"accepted it, expected {row.error.__name__}"
        if problem is None and keyspace() != before:
            problem = "changed the Redis keyspace"
        if problem is None and await store.get_expired_timers(FAR_FUTURE) != expired_before:
            problem = "changed the due timers"
        if problem is None and await store.get_timer("canary") != expired_before[0]:
            problem = "lost the canary"
        if problem is not None:
            failures.append(f"{row.name}: {problem}")
    assert failures == []
    # Still fully usable: a normal write, read, conditional delete and cancel.
    await store.store_timer("after", None, T0 + 1, {"n": [1, 2]})
    timer = await store.get_timer("after")
    assert timer is not None
    assert timer.metadata == {"n": [1, 2]}
    assert await store.delete_timer("after", only_if_scheduled_time=T0 + 1)
    assert await store.delete_timer("canary")
    assert await store.get_expired_timers(FAR_FUTURE) == []
    backend_name = request.node.callspec.params["backend"]
    report_figure(f"bad inputs tried ({backend_name})", len(STORE_ROWS), "")


# -- valid but unusual ids ------------------------------------------------------------------


@pytest.fixture(
    params=["memory", pytest.param("standalone", marks=REDIS), pytest.param("cluster", marks=REDIS)]
)
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[SessionTimerStore]:
    if request.param == "memory":
        store = create_timer_store(None)
    else:
        topology = request.getfixturevalue(f"redis_{request.param}")
        store = create_timer_store(redis_config(topology))
    yield store
    await aclose_store(store)


async def test_odd_but_valid_sender_ids_round_trip(
    any_store: SessionTimerStore, request: pytest.FixtureRequest
) -> None:
    store = any_store
    for index, sender in enumerate(VALID_ODD_IDS):
        await store.store_timer(sender, f"session-{sender}", T0 + index, {"id": sender})
    for index, sender in enumerate(VALID_ODD_IDS):
        timer = await store.get_timer(sender)
        assert timer is not None, sender
        assert (timer.sender_id, timer.session_id) == (sender, f"session-{sender}")
        assert (timer.scheduled_time, timer.metadata) == (T0 + index, {"id": sender})
    expired = await store.get_expired_timers(T0 + len(VALID_ODD_IDS))
    assert [t.sender_id for t in expired] == VALID_ODD_IDS
    if request.node.callspec.params["any_store"] == "cluster":
        assert isinstance(store, RedisTimerStore)
        _assert_members_sit_in_their_bucket(store, request.getfixturevalue("redis_cluster"))
    for index, sender in enumerate(VALID_ODD_IDS):
        assert not await store.delete_timer(sender, only_if_scheduled_time=T0 + index + 0.5)
        assert await store.delete_timer(sender, only_if_scheduled_time=T0 + index)
        assert await store.get_timer(sender) is None
    assert await store.get_expired_timers(FAR_FUTURE) == []


def _assert_members_sit_in_their_bucket(store: RedisTimerStore, cluster: ClusterTopology) -> None:
    """Each odd id is a member of its own bucket's due set, and of no other bucket's: the id
    never became part of a key name, so its braces cannot move it to another slot."""
    node = cluster.masters()[0]
    admin = RedisCluster(host="127.0.0.1", port=node.port, decode_responses=True)
    try:
        buckets = store.keys.all_buckets()
        assert len(buckets) > 1  # a cluster spreads the buckets
        for sender in VALID_ODD_IDS:
            home = store.keys.bucket_of(sender)
            holders = [i for i, b in enumerate(buckets) if admin.zscore(b.due, sender) is not None]
            assert holders == [home], sender
    finally:
        admin.close()


# -- the config table -----------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_bad_config_is_refused_naming_the_key_and_the_cli_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report_figure: Figure
) -> None:
    failures = []
    cli_rows = 0
    for index, row in enumerate(CONFIG_ROWS):
        with pytest.raises(TimerStoreConfigError) as raised:
            create_timer_store(row.section)
        if raised.value.key != row.key or row.key not in str(raised.value):
            failures.append(f"{row.name}: named {raised.value.key!r} ({raised.value})")
        path = tmp_path / f"endpoints-{index}.yml"
        path.write_text(yaml.safe_dump({"timer_store": row.section}), encoding="utf-8")
        with pytest.raises(TimerStoreConfigError) as from_file:
            create_timer_store(load_endpoint_config(path))
        assert from_file.value.key == row.key, row.name
        problem = _cli_problem(path, row.key, capsys)
        if problem:
            failures.append(f"{row.name} (cli): {problem}")
        cli_rows += 1
    for name, text in NOT_A_MAPPING.items():
        path = tmp_path / f"{name.replace(' ', '-')}.yml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(TimerStoreConfigError) as raised:
            load_endpoint_config(path)
        if raised.value.key != str(path):
            failures.append(f"file holding {name}: named {raised.value.key!r}")
        problem = _cli_problem(path, path.name, capsys)
        if problem:
            failures.append(f"file holding {name} (cli): {problem}")
        cli_rows += 1
    section_list = tmp_path / "section-a-list.yml"
    section_list.write_text("timer_store:\n  - type: redis\n", encoding="utf-8")
    with pytest.raises(TimerStoreConfigError) as raised:
        load_endpoint_config(section_list)
    assert raised.value.key == "timer_store"
    assert _cli_problem(section_list, "timer_store", capsys) is None
    cli_rows += 1
    assert failures == []
    report_figure("bad inputs tried (config)", len(CONFIG_ROWS) + len(NOT_A_MAPPING) + 1, "")
    report_figure("bad inputs tried (config, through the CLI)", cli_rows, "")


def _cli_problem(path: Path, key: str, capsys: pytest.CaptureFixture[str]) -> str | None:
    """What is wrong with `timerlab config check path` (None: exit 2, one line naming `key`)."""
    capsys.readouterr()
    try:
        code = timerlab(["config", "check", str(path)])
    except BaseException as exc:  # any escape is the finding
        return f"raised {type(exc).__name__}: {exc}"
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    if code != 2:
        return f"exit {code}"
    if "Traceback" in captured.err + captured.out:
        return "printed a traceback"
    if len(lines) != 1 or not lines[0].startswith("timerlab:"):
        return f"stderr was {captured.err!r}"
    if key not in lines[0]:
        return f"the line does not name {key!r}: {lines[0]!r}"
    return None


@pytest.mark.parametrize(
    ("section", "delivery"),
    [
        ("timer_store:\n  type: redis\n", "at_least_once"),
        ("timer_store:\n  type: redis\n  delivery: at_most_once\n", "at_most_once"),
        # Five documented methods only: a claim is a conditional delete, whatever the setting.
        ("timer_store:\n  type: tests.fixtures.broken_stores.DictStore\n", "at_most_once"),
    ],
)
def test_config_check_reports_the_delivery_the_service_will_use(
    section: str, delivery: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "endpoints.yml"
    path.write_text(section, encoding="utf-8")
    assert timerlab(["config", "check", str(path)]) == 0
    assert f"delivery {delivery}," in capsys.readouterr().out
