"""The Redis store over TLS, against redis-server processes that listen on TLS ports only.

Every server here requires a client certificate (`tls-auth-clients yes`, Redis's own default;
the harness relaxes it to `optional`), so a store that forgot to pass its certificate fails
instead of passing by luck. Certificate verification must be on: a client that trusts another
CA must fail on its first call, quickly, with an error that says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import ClusterTopology, SentinelTopology, StandaloneTopology, Topology
from servers.tls import TlsBundle, TlsError, generate_tls
from store import SessionTimerStore, StoreUnavailableError
from store.capabilities import ClaimingStore
from tests.conftest import _start, redis_unavailable, unique_prefix

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
BURST = 48
REQUIRE_CLIENT_CERTS = {"tls-auth-clients": "yes"}
FAST_FAILURE_SECONDS = 2.0
"""A TLS misconfiguration must surface within this; the fallback depends on failing fast."""

StoreFactory = Callable[[dict[str, Any]], SessionTimerStore]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsBundle:
    try:
        return generate_tls(tmp_path_factory.mktemp("tls"))
    except TlsError as exc:
        redis_unavailable(f"cannot generate TLS certificates: {exc}")
        raise


@pytest.fixture(scope="module")
def tls_standalone(tmp_path_factory: pytest.TempPathFactory, tls: TlsBundle) -> Iterator[Topology]:
    topology = StandaloneTopology(
        tmp_path_factory.mktemp("tls-standalone"),
        tls=tls.server_files(),
        extra_config=REQUIRE_CLIENT_CERTS,
    )
    yield _start(topology)
    topology.stop()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, tls: TlsBundle) -> Iterator[Topology]:
    topology = ClusterTopology(
        tmp_path_factory.mktemp("tls-cluster"),
        masters=3,
        replicas_per_master=0,
        tls=tls.server_files(),
        extra_config=REQUIRE_CLIENT_CERTS,
    )
    yield _start(topology)
    topology.stop()


@pytest.fixture(scope="module")
def tls_sentinel(tmp_path_factory: pytest.TempPathFactory, tls: TlsBundle) -> Iterator[Topology]:
    """Data nodes require client certificates; the sentinel accepts clients without one."""
    topology = SentinelTopology(
        tmp_path_factory.mktemp("tls-sentinel"),
        replicas=0,
        sentinels=1,
        tls=tls.server_files(),
        extra_config=REQUIRE_CLIENT_CERTS,
    )
    yield _start(topology)
    topology.stop()


def standalone_config(topology: Topology, tls: TlsBundle, **tls_options: Any) -> dict[str, Any]:
    """The section a user writes for a TLS standalone Redis, with this bundle's client files."""
    return {
        "type": "redis",
        "host": "127.0.0.1",
        "port": topology.nodes[0].port,
        "db": 0,
        "key_prefix": unique_prefix(),
        "fallback": False,
        **tls.store_options(**tls_options),
    }


def ha_config(
    topology: Topology, tls: TlsBundle, ca_cert: Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """The topology's section, with the client certificate (not the server's) and a fresh prefix."""
    config = topology.timer_store_config()
    config.update(key_prefix=unique_prefix(), fallback=False, **tls.store_options(ca_cert=ca_cert))
    config.update(overrides)
    return config


async def first_call_error(store: SessionTimerStore) -> tuple[StoreUnavailableError, float]:
    """The error of the store's first call, and how long the call took to fail."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await store.store_timer("user-1", "s", T0)
    return caught.value, time.monotonic() - started


async def exercise(store: SessionTimerStore) -> None:
    """Store, get, list expired and conditionally delete, as the timer service does."""
    senders = [f"user-{i}" for i in range(20)]  # enough to touch every bucket of a cluster
    for index, sender in enumerate(senders):
        await store.store_timer(sender, f"session-{index}", T0 + index, {"n": index})
    await store.store_timer("later", "s", T0 + 10_000)

    timer = await store.get_timer("user-3")
    assert timer is not None
    assert (timer.session_id, timer.scheduled_time, timer.metadata) == (
        "session-3",
        T0 + 3,
        {"n": 3},
    )

    expired = await store.get_expired_timers(T0 + 100)
    assert sorted(t.sender_id for t in expired) == sorted(senders)
    assert await store.delete_timer("user-3", only_if_scheduled_time=T0 + 4) is False
    assert await store.delete_timer("user-3", only_if_scheduled_time=T0 + 3) is True
    assert await store.delete_timer("user-3", only_if_scheduled_time=T0 + 3) is False
    assert await store.get_timer("user-3") is None
    assert await store.get_timer("later") is not None
    assert isinstance(store, ClaimingStore)
    batch = await store.claim_due(T0 + 100, limit=100, lease_until=None)
    assert sorted(c.timer.sender_id for c in batch.claims) == sorted(set(senders) - {"user-3"})
    assert await store.get_expired_timers(T0 + 100) == []


# -- standalone ----------------------------------------------------------------------------


async def test_standalone_store_works_end_to_end_over_tls(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(standalone_config(tls_standalone, tls))
    await exercise(store)
    assert await store.check() == []  # type: ignore[attr-defined]


async def test_a_client_trusting_another_ca_fails_fast_with_a_verify_error(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(standalone_config(tls_standalone, tls, ca_cert=tls.other_ca_cert))
    error, seconds = await first_call_error(store)
    assert "certificate verify failed" in str(error)
    assert seconds < FAST_FAILURE_SECONDS


async def test_the_server_refuses_a_client_without_a_certificate(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(standalone_config(tls_standalone, tls, client_cert=False))
    error, seconds = await first_call_error(store)
    # With TLS 1.3 the server checks the client certificate after the client considers the
    # handshake done: its alert ("certificate required") races the first read, which may see
    # the reset instead. Either way the call is refused, fast.
    text = str(error).lower()
    assert "certificate" in text or "connection reset" in text
    assert seconds < FAST_FAILURE_SECONDS


async def test_a_client_certificate_from_another_ca_is_refused(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory, tmp_path: Path
) -> None:
    stranger = generate_tls(tmp_path / "stranger")  # its client pair is signed by another CA
    config = standalone_config(tls_standalone, tls)
    config.update(ssl_certfile=str(stranger.client_cert), ssl_keyfile=str(stranger.client_key))
    error, _ = await first_call_error(build_store(config))
    assert "unknown ca" in str(error).lower()  # the server's TLS alert, passed on verbatim


async def test_a_burst_of_first_calls_over_tls_does_not_time_out(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    # A pod that just started (or reconnects after an outage) gets many messages at once.
    store = build_store(standalone_config(tls_standalone, tls))
    results = await asyncio.gather(
        *(store.store_timer(f"user-{i}", "s", T0 + i) for i in range(BURST)),
        return_exceptions=True,
    )
    failures = [str(result) for result in results if isinstance(result, BaseException)]
    assert failures == []


async def test_plaintext_cannot_reach_a_tls_only_server(
    tls_standalone: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    config = standalone_config(tls_standalone, tls)
    for key in ("use_ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        del config[key]
    _, seconds = await first_call_error(build_store(config))
    assert seconds < FAST_FAILURE_SECONDS


# -- cluster -------------------------------------------------------------------------------


async def test_cluster_store_works_end_to_end_over_tls(
    tls_cluster: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    # Generous timeouts: with the default 0.5 s the first fan-out over 16 buckets opens 16 TLS
    # connections at once and times out (connect or read) on a healthy cluster, see
    # test_a_burst_of_first_calls_over_tls_does_not_time_out.
    config = ha_config(tls_cluster, tls, socket_timeout=5)
    assert config["deployment_mode"] == "cluster"
    await exercise(build_store(config))


async def test_cluster_client_trusting_another_ca_fails_fast_with_a_verify_error(
    tls_cluster: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(ha_config(tls_cluster, tls, ca_cert=tls.other_ca_cert))
    error, seconds = await first_call_error(store)
    assert "certificate verify failed" in str(error)
    assert seconds < FAST_FAILURE_SECONDS


# -- sentinel ------------------------------------------------------------------------------


async def test_sentinel_store_works_end_to_end_over_tls(
    tls_sentinel: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    config = ha_config(tls_sentinel, tls)
    assert config["deployment_mode"] == "sentinel"
    await exercise(build_store(config))


async def test_sentinel_client_trusting_another_ca_says_certificate_verify_failed(
    tls_sentinel: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(ha_config(tls_sentinel, tls, ca_cert=tls.other_ca_cert))
    error, _ = await first_call_error(store)
    assert "certificate verify failed" in str(error)


async def test_sentinel_client_trusting_another_ca_fails_fast(
    tls_sentinel: Topology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    store = build_store(ha_config(tls_sentinel, tls, ca_cert=tls.other_ca_cert))
    _, seconds = await first_call_error(store)
    assert seconds < FAST_FAILURE_SECONDS


@pytest.fixture
def strict_tls_sentinel(tmp_path: Path, tls: TlsBundle) -> Iterator[SentinelTopology]:
    """A sentinel deployment where the sentinels, too, require client certificates.

    The harness renders sentinels with `tls-auth-clients optional`; the directive is appended
    to each sentinel's conf and the sentinel restarted, so the later line wins.
    """
    topology = SentinelTopology(
        tmp_path / "strict-sentinel",
        replicas=0,
        sentinels=1,
        tls=tls.server_files(),
        extra_config=REQUIRE_CLIENT_CERTS,
    )
    _start(topology)
    try:
        for node in topology.nodes:
            if node.role == "sentinel":
                with node.conf_path.open("a", encoding="utf-8") as conf:
                    conf.write("tls-auth-clients yes\n")
                topology.restart(node)
        yield topology
    finally:
        topology.stop()


async def test_sentinels_that_require_client_certificates_are_reachable(
    strict_tls_sentinel: SentinelTopology, tls: TlsBundle, build_store: StoreFactory
) -> None:
    sentinel = next(node for node in strict_tls_sentinel.nodes if node.role == "sentinel")
    with strict_tls_sentinel.client(sentinel) as admin:  # proves the server side is healthy
        assert admin.sentinel_get_master_addr_by_name(strict_tls_sentinel.service)
    store = build_store(ha_config(strict_tls_sentinel, tls))
    await store.store_timer("user-1", "s", T0)
    assert await store.get_timer("user-1") is not None
