"""A TCP proxy per pod between the pod and Redis, which the chaos controller can cut.

Why: this machine has no toxiproxy, netem or iptables (docs/architecture.md, section 8), and
killing or pausing Redis takes it away from every pod at once. A partial outage needs one pod to
lose Redis while the others keep it, so each pod reaches Redis through its own proxy on
loopback. Cutting a proxy closes its listening socket (new connections are refused) and aborts
the open ones (the pod's pooled connections reset): what a pod sees when its own network path to
Redis dies.

One process serves every pod's proxy, plus a small HTTP control port (`POST /cut/{name}`,
`POST /restore/{name}`, `GET /status`), so the controller can cut a pod from outside, and the
proxies' byte shuffling runs on a core of its own instead of inside the orchestrator.

    python -m loadtest.proxy --control PORT --route pod-0=LISTEN:UPSTREAM_HOST:UPSTREAM_PORT ...

Cluster pods connect directly (a cluster client learns node addresses from CLUSTER SLOTS,
which would bypass the proxy), and so do sentinel pods (sentinels hand out the real master).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 1.0
"""Upstream connect timeout: a refused or unroutable upstream closes the pod's side at once."""
_CHUNK = 65536


@dataclass(frozen=True)
class Route:
    """One pod's proxy: its name, where it listens, and the Redis it forwards to."""

    name: str
    listen_port: int
    upstream_host: str
    upstream_port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        """`NAME=LISTEN:HOST:PORT`."""
        name, sep, rest = text.partition("=")
        parts = rest.split(":")
        if not sep or not name or len(parts) != 3:
            raise ValueError(f"--route {text!r}: expected NAME=LISTEN_PORT:HOST:PORT")
        return cls(name, int(parts[0]), parts[1], int(parts[2]))


class TcpProxy:
    """Forwards every connection on `listen_port` to the upstream, until cut."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.cut_active = False
        self.accepted = 0

    @property
    def connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        """Listen (again); a restore must get the same port, which SO_REUSEADDR allows."""
        self._server = await asyncio.start_server(
            self._accept, HOST, self.route.listen_port, reuse_address=True
        )

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        self.cut_active = True
        await self._stop_listening()
        for downstream, upstream in list(self._links):
            downstream.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    async def restore(self) -> None:
        if not self.cut_active:
            return
        self.cut_active = False
        await self.start()

    async def close(self) -> None:
        """Cut, then let every connection handler finish (none is left for the loop to kill)."""
        await self.cut()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        if self.cut_active:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.route.upstream_host, self.route.upstream_port),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            # Redis is down: the pod must see its connection fail, not hang.
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            up_writer.transport.abort()
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        try:
            pumps = [
                asyncio.ensure_future(_pump(reader, up_writer)),
                asyncio.ensure_future(_pump(up_reader, writer)),
            ]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
        finally:
            # One side closed: close the other, so the pod sees Redis go away and vice versa.
            self._links.discard(link)
            for side in link:
                side.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()


class ProxySet:
    """The proxies of one run, by name, with the HTTP control app over them."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.proxies = {route.name: TcpProxy(route) for route in routes}

    async def start(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "cut": proxy.cut_active,
                "connections": proxy.connections,
                "accepted": proxy.accepted,
                "listen": proxy.route.listen_port,
                "upstream": f"{proxy.route.upstream_host}:{proxy.route.upstream_port}",
            }
            for name, proxy in self.proxies.items()
        }

    def app(self) -> web.Application:
        """`POST /cut/{name}`, `POST /restore/{name}`, `GET /status`."""
        app = web.Application()

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await self.start()
            yield
            await self.close()

        async def cut(request: web.Request) -> web.Response:
            await self._proxy(request).cut()
            return web.json_response(self.status())

        async def restore(request: web.Request) -> web.Response:
            await self._proxy(request).restore()
            return web.json_response(self.status())

        async def status(_: web.Request) -> web.Response:
            return web.json_response(self.status())

        app.cleanup_ctx.append(lifecycle)
        app.router.add_post("/cut/{name}", cut)
        app.router.add_post("/restore/{name}", restore)
        app.router.add_get("/status", status)
        return app

    def _proxy(self, request: web.Request) -> TcpProxy:
        name = request.match_info["name"]
        if name not in self.proxies:
            raise web.HTTPNotFound(text=f"no proxy named {name!r}")
        return self.proxies[name]


class ProxyControl:
    """The orchestrator's (blocking) client of a proxy process's control port."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.base = f"http://{HOST}:{port}"
        self.timeout = timeout

    def cut(self, name: str) -> None:
        self._call("POST", f"/cut/{name}")

    def restore(self, name: str) -> None:
        self._call("POST", f"/restore/{name}")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            data: dict[str, Any] = json.load(response)
        return data


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--control", type=int, required=True, help="HTTP control port")
    parser.add_argument("--route", action="append", type=Route.parse, required=True)
    args = parser.parse_args(argv)
    web.run_app(ProxySet(args.route).app(), host=HOST, port=args.control, print=None)


if __name__ == "__main__":
    main()
