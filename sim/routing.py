"""How a store's own redis-py client reaches the simulated Redis.

A store opens its own client from its `endpoint_config` (`url`, or `host`, `port`, `db`), as in
production. The simulator points each pod's section at a host of that pod's own,
`pod-N.sim.timerlab.invalid` (the `.invalid` domain never resolves: a client that escapes the
simulation fails at once instead of reaching a real server). While a simulated run lasts,
every redis-py connection pool aimed at such a host, asyncio or synchronous, built by
`Redis(...)`, `Redis.from_url(...)` or by the store itself, makes its connections through that
pod's simulated network instead of a socket: latency, outages, pauses, socket timeouts in
simulated time, restarts that lose data. Nothing in the store changes.

A synchronous client cannot wait inside the simulation (its calls would block the one event
loop every pod shares): its calls run at once, atomically, and an outage or a pause fails them
at once. The run records that it happened, because what such a store does to a real pod's
event loop only `timerlab load` can measure.

One simulated run at a time per process (the gate runs seeds in processes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

import redis
import redis.asyncio
import redis.exceptions as rexc
from fakeredis import FakeServer
from fakeredis._clients._sync import FakeRedisConnection

from sim.network import PodLink, SimConnection

SIM_DOMAIN = "sim.timerlab.invalid"
SIM_PORT = 6379
SYNC_NOTE = (
    "the store calls redis-py's synchronous client: in the simulator its calls ran at once "
    "and its outages failed them at once; what it does to a pod's event loop (every call "
    "blocks it) only `timerlab load` measures (rule loop_stall)"
)


def pod_host(index: int) -> str:
    """The host name that reaches pod `index`'s simulated network."""
    return f"pod-{index}.{SIM_DOMAIN}"


def pod_section(section: Mapping[str, Any], index: int) -> dict[str, Any]:
    """A `timer_store` section pointed at pod `index`'s simulated Redis.

    The reference store reads `host` (its `url` is a deprecated alias of it) and runs
    standalone here; any other store gets a redis URL if its section has `url`, else
    `host`, `port` and `db`.
    """
    out = dict(section)
    host = pod_host(index)
    if out.get("type") == "redis":
        for key in ("url", "endpoints"):
            out.pop(key, None)
        out.update(host=host, port=SIM_PORT, db=0, deployment_mode="standard")
    elif "url" in out:
        out["url"] = f"redis://{host}:{SIM_PORT}/0"
    else:
        out.update(host=host, port=SIM_PORT, db=0)
    return out


@dataclass(frozen=True)
class Route:
    """Where connections to one pod host go."""

    link: PodLink
    server: FakeServer
    on_sync_client: Callable[[], None]
    """Called when a synchronous client connects through this route."""


class SyncSimConnection(FakeRedisConnection):
    """A synchronous redis-py connection to the embedded Redis through a pod's link: no
    latency (it cannot wait), and outages or pauses fail its calls at once."""

    def __init__(
        self, *args: Any, link: PodLink, on_sync_client: Callable[[], None], **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.link = link
        self._on_sync_client = on_sync_client

    def connect(self) -> None:
        self._on_sync_client()
        if not self.link.reachable():
            raise rexc.ConnectionError("Error 111 connecting to the simulated Redis. Refused.")
        super().connect()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.link.reachable():
            self.disconnect()  # type: ignore[no-untyped-call]
            raise rexc.ConnectionError("Error 104 while writing to socket. Connection reset.")
        if self.link.redis.paused:
            self.disconnect()  # type: ignore[no-untyped-call]
            raise rexc.TimeoutError("Timeout reading from the simulated Redis (paused)")
        self.link.calls += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


_routes: dict[str, Route] = {}


@contextlib.contextmanager
def routed(routes: dict[str, Route]) -> Iterator[None]:
    """Route pools aimed at `routes`' hosts onto the simulated network while the block runs."""
    if _routes:
        raise RuntimeError("another simulated run is routing redis-py clients in this process")
    _routes.update(routes)
    async_init = redis.asyncio.ConnectionPool.__init__
    sync_init = redis.ConnectionPool.__init__

    def routed_async_init(pool: Any, *args: Any, **kwargs: Any) -> None:
        async_init(pool, *args, **kwargs)
        route = _route_of(pool.connection_kwargs)
        if route is not None:
            pool.connection_class = SimConnection
            pool.connection_kwargs.update(link=route.link, server=route.server)

    def routed_sync_init(pool: Any, *args: Any, **kwargs: Any) -> None:
        sync_init(pool, *args, **kwargs)
        route = _route_of(pool.connection_kwargs)
        if route is not None:
            pool.connection_class = SyncSimConnection
            pool.connection_kwargs.update(
                link=route.link, server=route.server, on_sync_client=route.on_sync_client
            )

    try:
        with (
            mock.patch.object(redis.asyncio.ConnectionPool, "__init__", routed_async_init),
            mock.patch.object(redis.ConnectionPool, "__init__", routed_sync_init),
        ):
            yield
    finally:
        _routes.clear()


def _route_of(kwargs: dict[str, Any]) -> Route | None:
    """The route of a pool's connection settings; TLS settings are dropped (the simulated
    network carries no TLS, and its faults are what is under test)."""
    route = _routes.get(str(kwargs.get("host", "")))
    if route is not None:
        for key in [key for key in kwargs if key.startswith("ssl")]:
            del kwargs[key]
    return route
