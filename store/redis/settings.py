"""Connection settings of `RedisTimerStore`, read and checked from a `timer_store` section.

The keys are Rasa's (`host`, `port`, `db`, `username`, `password`, `use_ssl`, `ssl_*`,
`socket_timeout`, `key_prefix`, `deployment_mode`, `endpoints`, `sentinel_service`), with the
same defaults except the timeouts: Rasa's 10 s socket timeout, with redis-py's default retries,
blocks a call for ~19 s when Redis hangs, so its fallback cannot start within a second. Ours is
0.5 s and no client retries. The keys that are new here (`socket_connect_timeout`, `buckets`,
`tombstone_limit`) have defaults that need no tuning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from store.endpoint import EndpointConfig
from store.errors import TimerStoreConfigError
from store.options import read_bool, read_choice, read_int, read_number, read_str

DeploymentMode = Literal["standard", "cluster", "sentinel"]

CONNECTION_KEYS = frozenset(
    {
        "host", "url", "port", "db", "username", "password", "use_ssl", "ssl_keyfile",
        "ssl_certfile", "ssl_ca_certs", "socket_timeout", "socket_connect_timeout",
        "key_prefix", "deployment_mode", "endpoints", "sentinel_service", "buckets",
        "tombstone_limit", "max_connections",
    }
)  # fmt: skip
SERVICE_KEYS = frozenset(
    {
        "poll_interval", "poll_jitter", "delivery", "lease_seconds", "fire_timeout",
        "max_fire_attempts", "batch_size", "recovery_rate", "missed_timers", "fallback",
        "probe_interval",
    }
)  # fmt: skip
"""Keys the timer service reads from the same section (see `store.options.ServiceSettings`)."""

_PREFIX = re.compile(r"[A-Za-z0-9]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class RedisSettings:
    """Everything needed to reach Redis and lay out the keys."""

    host: str = "localhost"
    port: int = 6379
    db: int = 2
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_ssl: bool = False
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    ssl_ca_certs: str | None = None
    socket_timeout: float = 0.5
    socket_connect_timeout: float = 0.5
    key_prefix: str | None = None
    deployment_mode: DeploymentMode = "standard"
    endpoints: tuple[tuple[str, int], ...] = ()
    sentinel_service: str = "mymaster"
    buckets: int = 1
    """Hash-tag partitions of the timers; cluster mode defaults to 16 so masters share load."""
    tombstone_limit: int = 10_000
    """Cancel tombstones kept per bucket for reconciling outages (oldest dropped first)."""
    max_connections: int = 64
    """Concurrent Redis calls per store; more wait their turn instead of failing."""

    @classmethod
    def from_endpoint_config(cls, config: EndpointConfig | None) -> RedisSettings:
        """Check every key; the first problem raises `TimerStoreConfigError` naming it."""
        if config is None:
            return cls()
        values: dict[str, Any] = dict(config.kwargs)
        unknown = sorted(set(values) - CONNECTION_KEYS - SERVICE_KEYS - {"type"})
        if unknown:
            raise TimerStoreConfigError(
                unknown[0], "unknown key for type redis (check its spelling)"
            )
        if config.url is not None:
            values["url"] = config.url
        if "url" in values and "host" in values:
            raise TimerStoreConfigError("url", "give host or its deprecated alias url, not both")
        host = read_str(values, "host") or read_str(values, "url") or cls.host
        if not _HOSTNAME.fullmatch(host):
            raise TimerStoreConfigError("host", f"{host!r} is not a host name or address")
        mode = read_choice(
            values, "deployment_mode", "standard", ("standard", "cluster", "sentinel")
        )
        endpoints = _read_endpoints(values)
        if mode == "sentinel" and not endpoints:
            raise TimerStoreConfigError("endpoints", "sentinel mode needs the sentinel addresses")
        if mode == "cluster" and not endpoints and "host" not in values and "url" not in values:
            raise TimerStoreConfigError("endpoints", "cluster mode needs at least one node")
        prefix = read_str(values, "key_prefix")
        if prefix is not None and not _PREFIX.fullmatch(prefix):
            raise TimerStoreConfigError(
                "key_prefix", f"must be alphanumeric (A-Z, a-z, 0-9), not {prefix!r}"
            )
        timeout = read_number(values, "socket_timeout", cls.socket_timeout)
        return cls(
            host=host,
            port=read_int(values, "port", cls.port, minimum=1, maximum=65535),
            db=read_int(values, "db", cls.db, minimum=0, maximum=1_000_000),
            username=read_str(values, "username"),
            password=read_str(values, "password"),
            use_ssl=read_bool(values, "use_ssl", cls.use_ssl),
            ssl_keyfile=read_str(values, "ssl_keyfile"),
            ssl_certfile=read_str(values, "ssl_certfile"),
            ssl_ca_certs=read_str(values, "ssl_ca_certs"),
            socket_timeout=timeout,
            socket_connect_timeout=read_number(values, "socket_connect_timeout", timeout),
            key_prefix=prefix,
            deployment_mode="cluster" if mode == "cluster" else
            "sentinel" if mode == "sentinel" else "standard",
            endpoints=endpoints,
            sentinel_service=read_str(values, "sentinel_service", cls.sentinel_service)
            or cls.sentinel_service,
            buckets=read_int(
                values, "buckets", 16 if mode == "cluster" else 1, minimum=1, maximum=4096
            ),
            tombstone_limit=read_int(
                values, "tombstone_limit", cls.tombstone_limit, minimum=0, maximum=10_000_000
            ),
            max_connections=read_int(
                values, "max_connections", cls.max_connections, minimum=1, maximum=10_000
            ),
        )  # fmt: skip

    def describe(self) -> str:
        """Where this store connects, for logs; never includes the password."""
        if self.deployment_mode == "standard":
            where = f"{self.host}:{self.port}/{self.db}"
        else:
            where = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        tls = " tls" if self.use_ssl else ""
        return f"redis {self.deployment_mode} {where}{tls}"


def _read_endpoints(values: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    raw = values.get("endpoints")
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [item.strip() for item in raw.split(",") if item.strip()]
    if not isinstance(raw, list | tuple):
        raise TimerStoreConfigError("endpoints", f"must be a list of host:port, not {raw!r}")
    parsed = []
    for index, item in enumerate(raw):
        key = f"endpoints[{index}]"
        if not isinstance(item, str):
            raise TimerStoreConfigError(key, f"must be a 'host:port' string, not {item!r}")
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not _HOSTNAME.fullmatch(host):
            raise TimerStoreConfigError(key, f"must look like host:port, not {item!r}")
        parsed.append((host.strip("[]"), read_int({key: port}, key, 0, minimum=1, maximum=65535)))
    return tuple(parsed)
