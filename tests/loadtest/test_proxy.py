"""The per-pod TCP proxy: it forwards, a cut refuses new connections and resets open ones,
a restore brings it back on the same port, and the control port drives all of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from loadtest.proxy import HOST, ProxySet, Route, TcpProxy
from servers import free_port


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """An echo server standing in for Redis."""
    server = await asyncio.start_server(_echo, HOST, 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _roundtrip(port: int, payload: bytes = b"PING\r\n") -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2)
    finally:
        writer.close()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the peer has closed or reset the connection."""
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except ConnectionResetError:
        return True


async def test_forwards_cuts_and_restores(upstream: int) -> None:
    proxy = TcpProxy(Route("pod-0", free_port(), HOST, upstream))
    await proxy.start()
    port = proxy.route.listen_port
    try:
        assert await _roundtrip(port) == b"PING\r\n"
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"

        await proxy.cut()
        assert await _closed(reader), "an open connection survived the cut"
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(HOST, port)

        await proxy.restore()
        assert await _roundtrip(port, b"back") == b"back"
        assert not proxy.cut_active
    finally:
        await proxy.close()


async def test_pod_side_closes_when_upstream_is_down() -> None:
    """A killed Redis: the pod's connection fails at once instead of hanging."""
    proxy = TcpProxy(Route("pod-0", free_port(), HOST, free_port()))
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection(HOST, proxy.route.listen_port)
        assert await _closed(reader)
        writer.close()
    finally:
        await proxy.close()


async def test_control_port(upstream: int) -> None:
    listen, control = free_port(), free_port()
    proxies = ProxySet([Route("pod-0", listen, HOST, upstream)])
    runner = web.AppRunner(proxies.app())
    await runner.setup()
    await web.TCPSite(runner, HOST, control).start()
    base = f"http://{HOST}:{control}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/cut/pod-0") as response:
                assert (await response.json())["pod-0"]["cut"] is True
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(HOST, listen)
            async with http.post(f"{base}/restore/pod-0") as response:
                assert (await response.json())["pod-0"]["cut"] is False
            assert await _roundtrip(listen) == b"PING\r\n"
            async with http.get(f"{base}/status") as response:
                assert (await response.json())["pod-0"]["accepted"] == 1
            async with http.post(f"{base}/cut/pod-9") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()


def test_route_syntax() -> None:
    assert Route.parse("pod-1=17000:127.0.0.1:6379") == Route("pod-1", 17000, "127.0.0.1", 6379)
    with pytest.raises(ValueError, match="NAME=LISTEN_PORT:HOST:PORT"):
        Route.parse("pod-1=17000")
