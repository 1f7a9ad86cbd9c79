"""The Lua scripts, loaded from package data and registered on a client.

Each script is its own body plus the shared library parts it uses (`lib_*.lua`), and no more:
every byte is compiled on every call by some servers (and by the simulator's embedded Redis).
Keys of one bucket share a hash tag, so a script touches exactly one cluster slot. Every value
a script compares (times, versions, epochs) arrives through ARGV: no TIME, no TTLs, so the
simulator's embedded Redis stays deterministic.

Scripts run by EVALSHA. Calls that meet NOSCRIPT run again behind a SCRIPT LOAD of what they
need, all of them in one pipeline, so a Redis restart or a failover to a replica (whose script
cache is empty) costs one extra round trip, never an error, however many calls were waiting (a
cluster client, which sends every call alone, pays two).

Calls made in the same event-loop tick go out together as one pipeline (one round trip, one
connection): a pod handling many messages at once pays Redis's latency once, not per message.
(Cluster clients send every call alone: their calls for different buckets already go to
different masters.)

A call with nothing queued before it takes the *direct lane*: one connection the runner keeps
for itself, on which the caller's own task writes the packed EVALSHA and reads the reply. That
is the path of an application that awaits one store call at a time (Rasa's manager does), and
it skips what a batch needs and a lone call does not: a queued future, a task to send it, and
redis-py's per-command pool checkout, retry wrapper and argument encoding, which together cost
more than the round trip on a fast network. Calls that arrive while the lane is busy queue and
go out as a pipeline, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

USES: dict[str, tuple[str, ...]] = {
    "store": ("meta",),
    "cancel": ("meta", "tomb"),
    "delete_if": (),
    "get": (),
    "expired": (),
    "claim": ("meta",),
    "complete": (),
    "reconcile": ("meta", "record", "tomb"),
}
"""Each script, and the library parts it needs."""


@cache
def script_source(name: str) -> str:
    """The full text of one script."""
    folder = resources.files("store.redis")
    parts = [(folder / f"lib_{part}.lua").read_text(encoding="utf-8") for part in USES[name]]
    return "\n".join([*parts, (folder / f"{name}.lua").read_text(encoding="utf-8")])


Queued = tuple[str, list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptRunner:
    """Runs the scripts on one client, batching the calls of one event-loop tick."""

    def __init__(self, client: Any, *, batch: bool) -> None:
        self._client = client
        self._batch = batch
        self._shas = {name: hashlib.sha1(script_source(name).encode()).hexdigest() for name in USES}
        self._heads = {name: _pack_head("EVALSHA", sha) for name, sha in self._shas.items()}
        self._queue: list[Queued] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._lane: Any = None
        """The direct lane's connection, taken from the client's pool on first use."""
        self._lane_busy = False

    async def run(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        if not self._batch:
            return await self._alone(name, keys, args)
        if not self._queue and not self._lane_busy:
            return await self._direct(name, keys, args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((name, keys, args, future))
        if len(self._queue) == 1:  # the first call of this tick sends them all at its end
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Queued]) -> None:
        try:
            if len(batch) == 1:
                name, keys, args, _ = batch[0]
                results = [await self._alone(name, keys, args)]
            else:
                results = await self._together(batch)
        except BaseException as exc:  # the connection failed: every call of the batch did
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (a crash cancelled it)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _together(self, batch: list[Queued]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for name, keys, args, _ in batch:
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # a restart or failover emptied the script cache: one more round trip
            again = await self._reload_and_run([batch[i][:3] for i in missing])
            for index, result in zip(missing, again, strict=True):
                results[index] = result
        return results

    async def _alone(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self._client.evalsha(self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            if not self._batch:  # a cluster client loads the script on every master first
                await self._client.script_load(script_source(name))
                return await self._client.evalsha(self._shas[name], len(keys), *keys, *args)
            [result] = await self._reload_and_run([(name, keys, args)])
            if isinstance(result, BaseException):
                raise result from None
            return result

    async def _direct(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """One call on the direct lane, in the caller's task.

        A reply cut off by an error or a cancellation would be read as the next call's, so
        anything but a Redis error reply drops the connection (the next call reconnects)."""
        self._lane_busy = True
        try:
            lane = await self._lane_ready()
            try:
                await _send(lane, _pack(self._heads[name], keys, args))
                return await lane.read_response()
            except NoScriptError:
                pass  # a restart or failover emptied the script cache
            except ResponseError:
                raise
            except BaseException:
                await lane.disconnect(nowait=True)
                raise
        finally:
            self._lane_busy = False
        [result] = await self._reload_and_run([(name, keys, args)])
        if isinstance(result, BaseException):
            raise result from None
        return result

    async def _lane_ready(self) -> Any:
        """The lane, connected and clean, as the pool would check it out.

        The lane idles between calls, and the server may close it meanwhile (a restart, a
        failover, an idle timeout): the loop has then seen end-of-file, and a cheap look at
        the reader tells. A lane closed or holding stray bytes reconnects through its class's
        own `connect()` (a sentinel-managed connection asks where the master is now)."""
        lane = self._lane
        if lane is None:
            lane = self._lane = await self._client.connection_pool.get_connection()
        elif not lane.is_connected:
            await lane.connect()
        elif await lane.can_read():
            await lane.disconnect()
            await lane.connect()
        return lane

    async def release(self) -> None:
        """Give the direct lane's connection back to the client's pool."""
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.disconnect(nowait=True)
            await self._client.connection_pool.release(lane)

    async def _reload_and_run(self, calls: list[tuple[str, list[Any], list[Any]]]) -> list[Any]:
        """SCRIPT LOAD what the calls need, then run them: one pipeline, one round trip.

        SCRIPT LOAD rather than EVAL, so a restricted ACL user needs no EVAL permission."""
        names = sorted({name for name, _, _ in calls})
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.script_load(script_source(name))
            for name, keys, args in calls:
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results[len(names) :]


_PLAIN_SEND = AbstractConnection.send_packed_command


async def _send(lane: Any, packed: bytes) -> None:
    """Write one command on the direct lane.

    redis-py's `send_packed_command` wraps every write in `asyncio.wait_for`, which on Python
    3.11 starts a task per write: two more event-loop iterations per call, ~20 µs here, more
    than the write. A small command on a connected, unpaused socket is written at once, so
    the lane writes it straight into the connection's stream, and only waits (with the socket
    timeout) when the transport could not take it all. A connection whose class sends its own
    way (the simulator's) is left to do so.
    """
    writer = getattr(lane, "_writer", None)
    if (
        not isinstance(writer, asyncio.StreamWriter)
        or type(lane).send_packed_command is not _PLAIN_SEND
    ):
        await lane.send_packed_command(packed)
        return
    writer.write(packed)
    if writer.transport.get_write_buffer_size():
        try:
            await asyncio.wait_for(writer.drain(), lane.socket_timeout)
        except TimeoutError:
            raise RedisTimeoutError("Timeout writing to socket") from None


def _pack_head(*parts: str) -> bytes:
    """The RESP encoding of a command's first arguments (its name, a script's SHA)."""
    return b"".join(_bulk(part.encode()) for part in parts)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _pack(head: bytes, keys: list[Any], args: list[Any]) -> bytes:
    """An EVALSHA as RESP: `head` (EVALSHA and the SHA), then the key count, keys and args.

    The store passes only `str` and `int` (times as `repr` strings), which UTF-8 encodes as
    redis-py's own encoder would; anything else is a bug, and fails here rather than on the
    wire."""
    parts = [str(len(keys)).encode()]
    for value in (*keys, *args):
        if isinstance(value, str):
            parts.append(value.encode())
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(b"%d" % value)
        else:
            raise TypeError(f"script argument of type {type(value).__name__}: {value!r}")
    count = 2 + len(parts)
    return b"*%d\r\n" % count + head + b"".join(_bulk(part) for part in parts)


class ScriptCall:
    """One script, called as `await script(keys=[...], args=[...])`."""

    def __init__(self, runner: ScriptRunner, name: str) -> None:
        self._runner = runner
        self._name = name

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return await self._runner.run(self._name, keys, args)


@dataclass(frozen=True)
class Scripts:
    """The scripts of one client."""

    store: ScriptCall
    cancel: ScriptCall
    delete_if: ScriptCall
    get: ScriptCall
    expired: ScriptCall
    claim: ScriptCall
    complete: ScriptCall
    reconcile: ScriptCall
    runner: ScriptRunner

    @classmethod
    def register(cls, client: Any, *, batch: bool) -> Scripts:
        """The scripts of `client` (no round trip until the first call)."""
        runner = ScriptRunner(client, batch=batch)
        return cls(**{name: ScriptCall(runner, name) for name in USES}, runner=runner)
