"""Authentication and least-privilege ACLs against a real redis-server.

`requirepass`: the right password works, a wrong or missing one fails on the first call with
an error that says so and never repeats the password. ACL: a user that may run only the
commands the store's Lua scripts need, on only its own `{<prefix>:timer:<n>}` keys, runs the
whole store, and can touch nothing else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from servers import StandaloneTopology, Topology
from store import FallbackTimerStore, SessionTimerStore, StoreUnavailableError
from store.capabilities import ClaimingStore, JournalEntry, ReconcilingStore
from store.redis import RedisTimerStore
from store.timer import SessionTimer
from tests.conftest import _start, unique_prefix

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
ADMIN_PASSWORD = "adm1n-Pa55word"
WRONG_PASSWORD = "wr0ng-Pa55word"
ACL_USER = "timers"
ACL_PASSWORD = "acl-Us3r-secret"
ACL_PREFIX = "myapp"

SCRIPT_COMMANDS = (
    "hdel", "hget", "hmget", "hset",
    "zadd", "zcard", "zcount", "zrange", "zrangebyscore", "zrem", "zremrangebyrank", "zscore",
)  # fmt: skip
"""What the store's Lua scripts call; ACLs apply inside scripts too."""
CLIENT_COMMANDS = (
    "ping",  # ping() and check(): the fallback's probe
    "select",  # the connection selects `db` (default 2) when it is not 0
    "evalsha",  # every operation
    "script|load",  # after NOSCRIPT: a fresh server, a restart or a failover
)
ACL_RULE = (
    "reset", "on", f">{ACL_PASSWORD}", f"~{{{ACL_PREFIX}:timer:*",
    *(f"+{command}" for command in CLIENT_COMMANDS + SCRIPT_COMMANDS),
)  # fmt: skip
"""`ACL SETUSER timers <rule>`: no EVAL, no CONFIG, no KEYS, no pub/sub, one key pattern."""


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A Redis whose default user needs ADMIN_PASSWORD, with the ACL user `timers` added."""
    topology = StandaloneTopology(tmp_path_factory.mktemp("auth"), password=ADMIN_PASSWORD)
    _start(topology)
    with topology.client(topology.nodes[0]) as admin:
        admin.execute_command("ACL", "SETUSER", ACL_USER, *ACL_RULE)
    yield topology
    topology.stop()


@pytest.fixture
def admin(protected: Topology) -> Iterator[redis.Redis]:
    with protected.client(protected.nodes[0]) as client:
        yield client


def section(topology: Topology, **values: Any) -> dict[str, Any]:
    """A `timer_store` section for the topology's server (db 0), without its password."""
    config: dict[str, Any] = {
        "type": "redis",
        "host": "127.0.0.1",
        "port": topology.nodes[0].port,
        "db": 0,
        "key_prefix": unique_prefix(),
        "fallback": False,
    }
    config.update(values)
    return config


def redis_client(topology: Topology, **credentials: Any) -> redis.Redis:
    """A plain sync client without retries (redis-py retries auth failures by default)."""
    return redis.Redis(
        port=topology.nodes[0].port,
        decode_responses=True,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
        **credentials,
    )


def acl_user_client(topology: Topology) -> redis.Redis:
    return redis_client(topology, username=ACL_USER, password=ACL_PASSWORD)


async def first_call_error(store: SessionTimerStore) -> StoreUnavailableError:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await store.get_timer("user-1")
    assert time.monotonic() - started < 2.0
    return caught.value


def error_texts(error: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


# -- requirepass ---------------------------------------------------------------------------


async def test_the_right_password_works(protected: Topology, build_store: Any) -> None:
    store = build_store(section(protected, password=ADMIN_PASSWORD))
    await store.store_timer("user-1", "s", T0)
    assert await store.get_timer("user-1") is not None
    assert await store.delete_timer("user-1", only_if_scheduled_time=T0) is True
    assert await store.check() == []


async def test_a_wrong_password_fails_clearly_without_repeating_it(
    protected: Topology, build_store: Any
) -> None:
    error = await first_call_error(build_store(section(protected, password=WRONG_PASSWORD)))
    assert "invalid username-password pair" in str(error)
    assert isinstance(error.__cause__, redis.AuthenticationError)
    for text in error_texts(error):
        assert WRONG_PASSWORD not in text
        assert ADMIN_PASSWORD not in text


async def test_a_missing_password_fails_as_an_authentication_error(
    protected: Topology, build_store: Any
) -> None:
    error = await first_call_error(build_store(section(protected)))
    assert isinstance(error.__cause__, redis.AuthenticationError)
    assert "authenticat" in str(error).lower()


async def test_a_missing_password_error_says_a_password_is_needed(
    protected: Topology, build_store: Any
) -> None:
    error = await first_call_error(build_store(section(protected)))
    assert re.search(r"password|authentication required", str(error), re.IGNORECASE)
    assert "HELLO" not in str(error)


# -- ACL -----------------------------------------------------------------------------------


def test_the_acl_grants_exactly_the_commands_the_lua_scripts_call() -> None:
    """If a script starts calling a new command, this rule (and the docs) must follow."""
    folder = resources.files("store.redis")
    called: set[str] = set()
    for item in folder.iterdir():
        if item.name.endswith(".lua"):
            text = item.read_text(encoding="utf-8")
            called |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*'(\w+)'", text)}
    assert called == set(SCRIPT_COMMANDS)


async def test_a_key_pattern_acl_user_runs_the_whole_store(
    protected: Topology, admin: redis.Redis, build_store: Any
) -> None:
    admin.script_flush()  # so the store must SCRIPT LOAD under the restricted user
    # Default db (2): the user needs SELECT as well as the script commands.
    config = section(protected, username=ACL_USER, password=ACL_PASSWORD, key_prefix=ACL_PREFIX)
    del config["db"]
    store = build_store(config)
    assert isinstance(store, RedisTimerStore)
    assert store.settings.db == 2

    await store.store_timer("user-1", "s1", T0 + 1, {"k": "v"})
    await store.store_timer("user-2", "s2", T0 + 2)
    await store.store_timer("later", "s3", T0 + 1000)
    timer = await store.get_timer("user-1")
    assert timer == SessionTimer("user-1", "s1", T0 + 1, {"k": "v"})
    assert [t.sender_id for t in await store.get_expired_timers(T0 + 10)] == ["user-1", "user-2"]
    assert await store.delete_timer("user-1", only_if_scheduled_time=T0 + 5) is False
    assert await store.delete_timer("user-1", only_if_scheduled_time=T0 + 1) is True

    assert isinstance(store, ClaimingStore)
    batch = await store.claim_due(T0 + 10, limit=10, lease_until=T0 + 40)
    assert [c.timer.sender_id for c in batch.claims] == ["user-2"]
    await store.complete(batch.claims)
    assert (await store.cancel_timer("later")).existed is True

    assert isinstance(store, ReconcilingStore)
    entry = JournalEntry("user-3", SessionTimer("user-3", "s4", T0 + 3), "armed")
    [outcome] = await store.reconcile([entry], store.horizon())
    assert outcome.applied
    assert await store.get_timer("user-3") is not None

    assert await store.check() == []  # CONFIG GET is forbidden, and check() copes
    with acl_user_client(protected) as user, pytest.raises(redis.exceptions.NoPermissionError):
        user.config_get("maxmemory-policy")

    with redis_client(protected, password=ADMIN_PASSWORD, db=2) as db2:
        written = db2.keys("*")
    assert written
    assert all(key.startswith(f"{{{ACL_PREFIX}:timer:") for key in written)


async def test_the_acl_user_cannot_read_keys_outside_its_pattern(
    protected: Topology, admin: redis.Redis
) -> None:
    other = "{otherapp:timer:0}:rec"
    admin.hset(other, "user-1", '1|["s"]')
    with acl_user_client(protected) as user:
        with pytest.raises(redis.exceptions.NoPermissionError, match="permissions to access"):
            user.hget(other, "user-1")
        with pytest.raises(redis.exceptions.NoPermissionError, match="permissions to access"):
            user.hset(other, "user-1", "forged")
        # Even through a script: ACL key checks apply inside Lua.
        sha = user.script_load("return redis.call('HGET', KEYS[1], ARGV[1])")
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)permission|NOPERM"):
            user.evalsha(sha, 1, other, "user-1")
        for forbidden in (
            ("GET", "anything"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
            ("EVAL", "return 1", "0"),
            ("SCRIPT", "FLUSH"),
            ("ACL", "WHOAMI"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.execute_command(*forbidden)
    assert admin.hget(other, "user-1") == '1|["s"]'


async def test_a_store_denied_by_acl_fails_loudly_instead_of_falling_back(
    protected: Topology, build_store: Any
) -> None:
    """A permission error is a misconfiguration, not an outage: memory must not hide it."""
    config = section(protected, username=ACL_USER, password=ACL_PASSWORD, key_prefix="otherapp")
    config["fallback"] = True
    store = build_store(config)
    assert isinstance(store, FallbackTimerStore)
    with pytest.raises(redis.exceptions.NoPermissionError, match="permissions to access"):
        await store.store_timer("user-1", "s", T0)
    assert not store.active
