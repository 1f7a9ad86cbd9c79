"""The network between one simulated pod and the embedded Redis.

`SimConnection` is the fakeredis connection redis-py uses, with the network put back in: a
request takes latency to arrive, runs atomically at the server on arrival, and the reply takes
latency to come back. A pod whose link is cut, or a killed Redis, refuses connections; a
paused Redis holds requests until it resumes, and the client gives up at its socket timeout
while its bytes stay buffered and run later (the unknown outcome of a timed-out call).

All waiting is `asyncio.sleep` on the simulator's loop, so it is simulated time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rexc
from fakeredis.aioredis import FakeAsyncRedisConnection

from sim.costs import Queue, reply_bytes
from sim.redis_server import EmbeddedRedis


@dataclass
class PodLink:
    """One pod's path to Redis: latency model and whether it is cut off."""

    redis: EmbeddedRedis
    rng: random.Random
    latency: float = 0.0005
    """Mean one-way latency in seconds."""
    jitter: float = 0.5
    """One-way latency is uniform in latency × [1 - jitter, 1 + jitter]."""
    cuts: int = 0
    """Partial outages in force: while above 0 this pod alone cannot reach Redis."""
    calls: int = field(default=0)
    """Requests sent (a pipeline is one)."""
    scripts: int = field(default=0)
    """EVALSHA commands among them (what a load run's `INFO commandstats` counts as evalsha)."""
    cpu: Queue = field(default_factory=Queue)
    """The pod's CPU, which encodes requests and parses replies when the run has costs."""

    def one_way(self) -> float:
        spread = self.latency * self.jitter
        return self.latency + self.rng.uniform(-spread, spread) if spread else self.latency

    def reachable(self) -> bool:
        return self.redis.up and self.cuts == 0


class SimConnection(FakeAsyncRedisConnection):
    """A redis-py asyncio connection to the embedded Redis through a `PodLink`."""

    def __init__(self, *args: Any, link: PodLink, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link = link
        self._reply_at = 0.0
        self._deadline = 0.0
        self._arrived = 0.0
        self._way_back = 0.0

    async def _connect(self) -> None:
        await asyncio.sleep(self.link.one_way() * 2)  # the TCP handshake
        if not self.link.reachable():
            raise rexc.ConnectionError(
                "Error 111 connecting to embedded redis. Connection refused."
            )
        await super()._connect()

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        chunks = (
            [command.encode()]
            if isinstance(command, str)
            else ([command] if isinstance(command, bytes) else list(command))
        )
        loop = asyncio.get_running_loop()
        timeout = self.socket_timeout or 1e9
        self.link.calls += 1
        self.link.scripts += sum(chunk.count(b"\r\nEVALSHA\r\n") for chunk in chunks)
        costs = self.link.redis.costs
        if costs is not None:  # the pod's CPU encodes the request before the socket sees it
            await self.link.cpu.use(costs.pod_per_call)
        self._deadline = loop.time() + timeout
        await asyncio.sleep(self.link.one_way())
        if not self.link.reachable():
            await self.disconnect(nowait=True)
            raise rexc.ConnectionError("Error 104 while writing to socket. Connection reset.")
        redis = self.link.redis
        if redis.paused:
            socket = self._sock
            resumed = asyncio.ensure_future(until_resumed(redis))
            remaining = max(0.0, self._deadline - loop.time())
            done, _ = await asyncio.wait({resumed}, timeout=remaining)
            if not done:
                resumed.cancel()
                redis.defer(lambda: _replay(socket, chunks))
                self._sock = None
                await self.disconnect(nowait=True)
                raise rexc.TimeoutError("Timeout reading from embedded redis")
            if not self.link.reachable():  # killed while paused
                await self.disconnect(nowait=True)
                raise rexc.ConnectionError("Connection closed by server.")
        # Straight to the embedded server's socket: redis-py's send wraps the write in a
        # `wait_for` (a task per call on Python 3.11) for a timeout this class models itself.
        await self._send_packed_command(chunks)
        self._arrived = loop.time()
        self._reply_at = loop.time() + redis.extra_latency + self.link.one_way()
        self._way_back = self._reply_at - self._arrived

    async def read_response(self, **kwargs: Any) -> Any:  # type: ignore[override]
        response = await super().read_response(**kwargs)
        loop = asyncio.get_running_loop()
        costs = self.link.redis.costs
        if costs is not None:  # the reply leaves when Redis's one thread has made it
            size = reply_bytes(response)
            made = self.link.redis.thread.take(
                self._arrived, costs.redis_per_command + costs.redis_per_reply_byte * size
            )
            self._reply_at = max(self._reply_at, made + self._way_back)
        if self._reply_at > self._deadline:
            await asyncio.sleep(max(0.0, self._deadline - loop.time()))
            await self.disconnect(nowait=True)
            raise rexc.TimeoutError("Timeout reading from embedded redis")
        await asyncio.sleep(max(0.0, self._reply_at - loop.time()))
        if costs is not None:  # and the pod's CPU parses it
            await self.link.cpu.use(costs.pod_per_reply_byte * reply_bytes(response))
        return response


async def until_resumed(redis: EmbeddedRedis) -> None:
    resumed = redis.resumed
    if resumed.processed:
        return
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: object) -> None:
        if not future.done():
            future.set_result(None)

    resumed.callbacks.append(wake)
    await future


def _replay(socket: Any, chunks: list[bytes]) -> None:
    """Deliver buffered request bytes to the server; the reply goes nowhere."""
    if socket is None:
        return
    for chunk in chunks:
        socket.sendall(chunk)
