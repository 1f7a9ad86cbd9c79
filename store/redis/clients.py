"""Building the redis-py asyncio client for each deployment mode.

Kept apart from the store (as cachelib does) so the store's logic is written once. Every client
gets explicit socket and connect timeouts and no client-side retries: a retry loop inside
redis-py would hide an outage from the fallback for seconds.
"""

from __future__ import annotations

import ssl
from typing import Any

import redis
from redis.asyncio import ConnectionPool, Redis, SSLConnection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo

from store.redis.settings import RedisSettings

RedisClient = Redis | RedisCluster


class TlsContext:
    """One `ssl.SSLContext` per store, shared by all its connections.

    redis-py builds a new context for every connection, which costs ~50 ms of blocking CPU
    here: a burst of new connections then stalls the event loop past the connect timeout and
    looks like an outage. The first connection builds it; the others reuse it.
    """

    def __init__(self) -> None:
        self.context: ssl.SSLContext | None = None


class SharedTlsConnection(SSLConnection):
    """An `SSLConnection` that takes its context from the store's `TlsContext`."""

    def __init__(self, *, tls_context: TlsContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tls_context.context is None:
            tls_context.context = self.ssl_context.get()
        self.ssl_context.context = tls_context.context


class SharedTlsSentinelConnection(SentinelManagedSSLConnection):
    """The sentinel-managed variant of `SharedTlsConnection`."""

    def __init__(self, *, tls_context: TlsContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if tls_context.context is None:
            tls_context.context = self.ssl_context.get()
        self.ssl_context.context = tls_context.context


_DRIVER_INFO = DriverInfo(lib_version=redis.__version__)


def no_retry() -> Retry:
    """A fresh retry policy that never retries (each client needs its own instance)."""
    return Retry(NoBackoff(), 0)


def _common(settings: RedisSettings) -> dict[str, Any]:
    common: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "decode_responses": True,
        "retry": no_retry(),
        # RESP2: with RESP3, redis-py 8 turns on maintenance notifications, which skips its
        # check of idle pooled connections, so every connection left over from before a Redis
        # restart fails once and looks like a second outage.
        "protocol": 2,
        # Built once: without it redis-py looks its own version up in the package metadata
        # for every new connection, ~1 ms of blocking file-system work each, which stalls the
        # event loop when a merge opens dozens of connections at once.
        "driver_info": _DRIVER_INFO,
        # The store's own gate keeps calls at or below max_connections; the margin covers
        # connections a cluster or sentinel client opens for its own bookkeeping.
        "max_connections": settings.max_connections + 8,
    }
    if settings.use_ssl:
        common.update(
            ssl=True,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_certfile=settings.ssl_certfile,
            ssl_ca_certs=settings.ssl_ca_certs,
        )
    return common


def _sentinel_kwargs(common: dict[str, Any]) -> dict[str, Any]:
    """The sentinels get the data connection's timeouts and TLS material, and no retries: a
    sentinel lookup that retries would delay the fallback by seconds."""
    keys = (
        "socket_timeout", "socket_connect_timeout", "ssl", "ssl_ca_certs", "ssl_certfile",
        "ssl_keyfile",
    )  # fmt: skip
    return {**{key: common[key] for key in keys if key in common}, "retry": no_retry()}


def sentinel_probe(settings: RedisSettings, host: str, port: int) -> Redis:
    """A plain client for one sentinel, configured as the store reaches it (for diagnosis)."""
    return Redis(host=host, port=port, **_sentinel_kwargs(_common(settings)))


def build_client(settings: RedisSettings) -> RedisClient:
    """The client for `settings.deployment_mode`; connects lazily, on the first command."""
    common = _common(settings)
    tls = TlsContext() if settings.use_ssl else None
    if settings.deployment_mode == "cluster":
        nodes = settings.endpoints or ((settings.host, settings.port),)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            require_full_coverage=True,
            **common,
        )
        if tls is not None:  # nodes found later are built from these kwargs
            cluster.connection_kwargs.update(connection_class=SharedTlsConnection, tls_context=tls)
            for node in cluster.nodes_manager.startup_nodes.values():
                node.connection_class = SharedTlsConnection
                node.connection_kwargs["tls_context"] = tls
        return cluster
    if settings.deployment_mode == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.endpoints), sentinel_kwargs=_sentinel_kwargs(common)
        )
        if tls is not None:
            common.update(connection_class=SharedTlsSentinelConnection, tls_context=tls)
        client: Redis = sentinel.master_for(settings.sentinel_service, db=settings.db, **common)
        return client
    retry = common.pop("retry")
    if tls is not None:
        common.pop("ssl")
        common.update(connection_class=SharedTlsConnection, tls_context=tls)
    pool = ConnectionPool(host=settings.host, port=settings.port, db=settings.db, **common)
    return Redis(connection_pool=pool, retry=retry)
