"""Building the redis-py asyncio client for each deployment mode.

Kept apart from the store (as cachelib does) so the store's logic is written once. Every client
gets explicit socket and connect timeouts and no client-side retries: a retry loop inside
redis-py would hide an outage from the fallback for seconds.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from store.redis.settings import RedisSettings

RedisClient = Redis | RedisCluster


def no_retry() -> Retry:
    """A fresh retry policy that never retries (each client needs its own instance)."""
    return Retry(NoBackoff(), 0)


def build_client(settings: RedisSettings) -> RedisClient:
    """The client for `settings.deployment_mode`; connects lazily, on the first command."""
    common: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "decode_responses": True,
        "retry": no_retry(),
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
    if settings.deployment_mode == "cluster":
        nodes = settings.endpoints or ((settings.host, settings.port),)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            require_full_coverage=True,
            **common,
        )
    if settings.deployment_mode == "sentinel":
        sentinel_kwargs = {
            key: common[key]
            for key in ("socket_timeout", "socket_connect_timeout", "ssl", "ssl_ca_certs")
            if key in common
        }
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.endpoints), sentinel_kwargs=sentinel_kwargs
        )
        client: Redis = sentinel.master_for(settings.sentinel_service, db=settings.db, **common)
        return client
    return Redis(host=settings.host, port=settings.port, db=settings.db, **common)
