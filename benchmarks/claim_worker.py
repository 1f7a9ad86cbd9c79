"""One pod of the `claim` benchmark row, in a process of its own.

Why a process: pods are processes in production, and Python threads would share one GIL, so
"4 pods" in threads would measure lock contention, not four claimers racing on Redis.

Protocol (one JSON object per line): the coordinator writes a job; the worker builds its
store, warms it up (connection, script cache) and answers {"ready": true}; on the line "go"
it claims and fires until nothing is due, then answers with what it fired and when it
finished (`time.time()`, the coordinator's clock too, as both run on one host). A worker
serves jobs until its stdin closes, so the row pays the interpreter start-up once.

Job: {"mode": "ours" | "baseline" | "limit", "host", "port", "prefix", "batch"}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, cast

import redis.asyncio

from benchmarks.baselines.rasa_manager import RasaTimerManager
from benchmarks.baselines.rasa_store import RasaRedisTimerStore, rasa_key_prefix
from record.logs import configure_logging
from store.clock import SystemClock
from store.endpoint import EndpointConfig
from store.options import ServiceSettings
from store.redis import RedisTimerStore
from store.service import TimerService
from store.timer import SessionTimer

LIMIT_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then
  return {}
end
local records = redis.call('HMGET', KEYS[2], unpack(due))
redis.call('ZREM', KEYS[1], unpack(due))
redis.call('HDEL', KEYS[2], unpack(due))
return records
"""
"""The limit: claim a batch with the fewest commands (no lease, no versions), atomically."""

Fired = list[str]
Run = Callable[[], Awaitable[int]]


class Pod:
    """One claimer: `prepare` before the start signal, `run` after it, `close` at the end."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.fired: Fired = []
        self.fire_ids: list[str] = []
        self._close: list[Callable[[], Awaitable[None]]] = []

    async def fire(
        self, sender_id: str, session_id: str | None, scheduled_time: float, **kwargs: Any
    ) -> None:
        """The callback: record what fired (the coordinator checks for duplicates)."""
        del session_id, scheduled_time
        self.fired.append(sender_id)
        if "fire_id" in kwargs:
            self.fire_ids.append(str(kwargs["fire_id"]))

    async def prepare(self) -> Run:
        mode = self.job["mode"]
        if mode == "ours":
            return await self._ours()
        if mode == "baseline":
            return await self._baseline()
        if mode == "limit":
            return await self._limit()
        raise ValueError(f"unknown mode {mode!r}")

    async def close(self) -> None:
        for close in self._close:
            await close()

    def _endpoint(self, **extra: Any) -> EndpointConfig:
        return EndpointConfig(
            type="redis", host=self.job["host"], port=self.job["port"], db=0,
            key_prefix=self.job["prefix"], **extra,
        )  # fmt: skip

    async def _ours(self) -> Run:
        """`TimerService.poll_once` until nothing is due: at-least-once, leased batches."""
        store = RedisTimerStore(self._endpoint(socket_timeout=5.0))
        self._close.append(store.aclose)
        settings = ServiceSettings(batch_size=int(self.job["batch"]))

        async def fire(sender_id: str, session_id: str | None, when: float, fire_id: str) -> None:
            await self.fire(sender_id, session_id, when, fire_id=fire_id)

        service = TimerService(store, SystemClock(), fire, settings=settings)
        await store.ping()
        await store.get_expired_timers(0.0)  # loads a script: the connection is warm

        async def run() -> int:
            polls = 0
            while True:
                result = await service.poll_once()
                polls += 1
                if not result.fired and result.remaining_due == 0:
                    return polls

        return run

    async def _baseline(self) -> Run:
        """`RasaTimerManager.poll_once` until a poll fires nothing (every due timer was seen
        by the first poll of every pod, so then all are claimed)."""
        store = RasaRedisTimerStore(self._endpoint())

        async def close() -> None:
            store.close()

        self._close.append(close)
        manager = RasaTimerManager(store, self.fire)
        store.client.ping()

        async def run() -> int:
            polls = 0
            while True:
                fired = await manager.poll_once()
                polls += 1
                if not fired:
                    return polls

        return run

    async def _limit(self) -> Run:
        """Batched Lua claims on the baseline's layout, decoded into `SessionTimer`s."""
        client = redis.asyncio.Redis(
            host=self.job["host"], port=self.job["port"], db=0, socket_timeout=5.0,
            decode_responses=True,
        )  # fmt: skip
        self._close.append(client.aclose)
        claim = client.register_script(LIMIT_CLAIM)
        base = rasa_key_prefix(self.job["prefix"])
        keys = [f"{base}timers", f"{base}data"]
        await claim(keys=keys, args=[0, 1])  # nothing is due at time 0: loads the script

        async def run() -> int:
            polls = 0
            while True:
                records = cast(
                    list[str | None],
                    await claim(keys=keys, args=[repr(time.time()), self.job["batch"]]),
                )
                polls += 1
                if not records:
                    return polls
                for raw in records:
                    if raw is not None:
                        timer = SessionTimer.from_dict(json.loads(raw))
                        await self.fire(timer.sender_id, timer.session_id, timer.scheduled_time)

        return run


def serve(stdin: TextIO, stdout: TextIO) -> None:
    """Serve jobs from `stdin` until it closes."""

    def say(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    for line in stdin:
        if not line.strip():
            continue
        pod = Pod(json.loads(line))
        loop = asyncio.new_event_loop()
        try:
            run = loop.run_until_complete(pod.prepare())
            say({"ready": True})
            if stdin.readline().strip() != "go":
                return
            started = time.time()
            polls = loop.run_until_complete(run())
            ended = time.time()
            say(
                {
                    "fired": pod.fired,
                    "fire_ids": pod.fire_ids,
                    "started": started,
                    "ended": ended,
                    "polls": polls,
                }
            )
        finally:
            loop.run_until_complete(pod.close())
            loop.close()


def main() -> None:
    configure_logging(logging.ERROR)
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: exit quietly
        sys.exit(130)
