"""An example custom timer store, written the way Rasa's documentation tells users to.

It subclasses `SessionTimerStore`, takes `endpoint_config` in its constructor and opens its own
`redis.asyncio` client from it (`url`, or `host`, `port`, `db`, `password`), with explicit
timeouts so an unreachable Redis fails fast instead of freezing the event loop, and no hidden
retries: a write that timed out may still land (a paused Redis runs it when it resumes), so a
client that blindly sends it again can arm the timer a second time after another pod has
fired it (the gate catches that as a duplicate). Timers live in
one sorted set (sender -> scheduled time) and one hash (sender -> the timer as JSON). Claiming
is atomic: the conditional delete compares and deletes in one Lua script.

Gate it as users gate theirs (see the README, "Gate your own store"):

    timerlab gate --seeds 40 --store-config examples/endpoints.yml
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from store import EndpointConfig, SessionTimer, SessionTimerStore

DELETE_IF = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
"""Compare-and-delete in one step: only one caller can win a timer, and only while it is the
one stored. The times compare as the doubles they are, exactly, never with a tolerance (the
argument is Python's repr of the float, which reads back as the very same double)."""


class ExampleRedisTimerStore(SessionTimerStore):
    """Timers in one sorted set and one hash; five methods and nothing else."""

    def __init__(self, endpoint_config: EndpointConfig | None = None) -> None:
        super().__init__(endpoint_config)
        settings = endpoint_config.kwargs if endpoint_config else {}
        options: dict[str, Any] = {
            "socket_timeout": float(settings.get("socket_timeout", 1.0)),
            "socket_connect_timeout": float(settings.get("socket_connect_timeout", 1.0)),
            "retry": Retry(NoBackoff(), retries=0),
            # RESP2: with RESP3, redis-py 8 skips its check of idle pooled connections, and
            # every connection left over from before a Redis restart fails its next call.
            "protocol": 2,
            "decode_responses": True,
        }
        if endpoint_config is not None and endpoint_config.url:
            self._redis = Redis.from_url(endpoint_config.url, **options)
        else:
            self._redis = Redis(
                host=settings.get("host", "localhost"),
                port=int(settings.get("port", 6379)),
                db=int(settings.get("db", 0)),
                password=settings.get("password"),
                **options,
            )
        prefix = settings.get("key_prefix", "example")
        self._due, self._data = f"{prefix}:due", f"{prefix}:data"
        self._delete_if = self._redis.register_script(DELETE_IF)
        self._closing: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Release the connections (Rasa calls this in or after the event loop)."""
        with contextlib.suppress(RuntimeError):  # no running loop: its sockets are gone too
            self._closing = asyncio.get_running_loop().create_task(self._redis.aclose())

    async def store_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        timer = SessionTimer.create_timer(sender_id, session_id, scheduled_time, metadata)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._due, {sender_id: scheduled_time})
            pipe.hset(self._data, sender_id, json.dumps(timer.to_dict()))
            await pipe.execute()

    async def delete_timer(
        self, sender_id: str, only_if_scheduled_time: float | None = None
    ) -> bool:
        if only_if_scheduled_time is None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._due, sender_id)
                pipe.hdel(self._data, sender_id)
                removed, _ = await pipe.execute()
            return bool(removed)
        deleted = await self._delete_if(
            keys=[self._due, self._data], args=[sender_id, repr(only_if_scheduled_time)]
        )
        return bool(deleted)

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        raw = await self._redis.hget(self._data, sender_id)
        return None if raw is None else SessionTimer.from_dict(json.loads(raw))

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        cutoff = self._check_time_for_expired(cutoff_time)
        senders = [str(s) for s in await self._redis.zrangebyscore(self._due, "-inf", cutoff)]
        if not senders:
            return []
        raws = await self._redis.hmget(self._data, senders)
        timers = [SessionTimer.from_dict(json.loads(raw)) for raw in raws if raw is not None]
        return self._filter_expired(timers, cutoff)
