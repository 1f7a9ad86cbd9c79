"""A baseline of Rasa Pro 3.21's Redis timer store, for side-by-side benchmarks only.

Reimplemented from the facts in docs/architecture.md, section 7 (not from Rasa's code), and
never used by `store/`. It must not be a strawman: it makes exactly the Redis round trips Rasa
makes, so a benchmark that beats it beats Rasa, not a caricature of it:

- `store_timer`: 1 round trip, a MULTI pipeline of ZADD + HSET.
- `delete_timer`: 1 round trip; unconditional is a MULTI pipeline of ZREM + HDEL, conditional is
  a Lua compare-and-delete that accepts any stored score within 0.001 s of the expected one.
- `get_timer`: 1 round trip (HGET).
- `get_expired_timers`: 1 + E round trips: ZRANGEBYSCORE -inf..cutoff with no LIMIT, then one
  HGET per due timer, one after the other.

Keys: a sorted set `{prefix}timers` (member sender_id, score scheduled_time) and a hash
`{prefix}data` (sender_id -> JSON of the whole timer). The prefix is `timer:`, or `<p>:timer:`
for a custom `key_prefix` p. Rasa's cluster (`{timer}:`) and sentinel modes are not reproduced:
the benchmarks compare on a standalone server, where the round trips are the same.

Its defining flaw is kept on purpose: the async methods call the SYNCHRONOUS redis-py client,
with a 10 s socket timeout and redis-py's default retries, so a hung Redis stalls the whole event
loop. Exceptions are redis-py's own, unwrapped, as Rasa lets them through.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

import redis

from store.base import SessionTimerStore
from store.errors import TimerStoreConfigError
from store.timer import SessionTimer

if TYPE_CHECKING:
    from store.endpoint import EndpointConfig

DEFAULT_DB = 2
DEFAULT_PORT = 6379
DEFAULT_SOCKET_TIMEOUT = 10.0
CLAIM_TOLERANCE = 0.001
"""Seconds: Rasa's claim accepts any stored score this close to the expected one."""

_ALNUM = re.compile(r"[A-Za-z0-9]+")

# The tolerance is part of the script, as in Rasa: two instances armed less than 1 ms apart
# are indistinguishable to a claim. Keys and values go through KEYS/ARGV, never the script text.
COMPARE_AND_DELETE = f"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
if math.abs(tonumber(score) - tonumber(ARGV[2])) < {CLAIM_TOLERANCE} then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def rasa_key_prefix(key_prefix: str | None) -> str:
    """`timer:`, or `<p>:timer:` for a custom alphanumeric prefix (anything else is refused)."""
    if key_prefix is None or key_prefix == "":
        return "timer:"
    if not _ALNUM.fullmatch(key_prefix):
        raise TimerStoreConfigError("key_prefix", f"must be alphanumeric, not {key_prefix!r}")
    return f"{key_prefix}:timer:"


class RasaRedisTimerStore(SessionTimerStore):
    """Rasa 3.21's Redis timer store: sorted set + hash, sync client inside async methods."""

    def __init__(self, endpoint_config: EndpointConfig | None = None) -> None:
        super().__init__(endpoint_config)
        kwargs: dict[str, Any] = dict(endpoint_config.kwargs) if endpoint_config else {}
        url = endpoint_config.url if endpoint_config else None
        if url is None:
            url = kwargs.get("url")
        if url is not None and "host" in kwargs:
            raise TimerStoreConfigError("url", "give host or its deprecated alias url, not both")
        self.host: str = str(kwargs.get("host") or url or "localhost")
        self.port = int(kwargs.get("port", DEFAULT_PORT))
        self.db = int(kwargs.get("db", DEFAULT_DB))
        self.socket_timeout = float(kwargs.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT))
        self.prefix = rasa_key_prefix(kwargs.get("key_prefix"))
        self.timers_key = f"{self.prefix}timers"
        self.data_key = f"{self.prefix}data"
        # No `retry=` on purpose: redis-py's default policy is part of what is being measured.
        self.client = redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            socket_timeout=self.socket_timeout,
            decode_responses=True,
        )

    def close(self) -> None:
        """Close the sync client's connections (safe to call twice, in or out of a loop)."""
        self.client.close()

    async def store_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """One MULTI pipeline: ZADD into the schedule, HSET the timer's JSON."""
        timer = SessionTimer.create_timer(sender_id, session_id, scheduled_time, metadata)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.timers_key, {sender_id: timer.scheduled_time})
        pipe.hset(self.data_key, sender_id, json.dumps(timer.to_dict()))
        pipe.execute()

    async def delete_timer(
        self, sender_id: str, only_if_scheduled_time: float | None = None
    ) -> bool:
        """Unconditional: a MULTI of ZREM + HDEL. Conditional: the tolerant Lua claim."""
        if only_if_scheduled_time is not None:
            deleted = self.client.eval(
                COMPARE_AND_DELETE,
                2,
                self.timers_key,
                self.data_key,
                sender_id,
                float(only_if_scheduled_time),
            )
            return bool(deleted)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.timers_key, sender_id)
        pipe.hdel(self.data_key, sender_id)
        removed, dropped = pipe.execute()
        return bool(removed) or bool(dropped)

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        """One HGET of the timer's JSON."""
        raw = cast(str | None, self.client.hget(self.data_key, sender_id))
        return None if raw is None else _decode(raw)

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        """ZRANGEBYSCORE with no LIMIT, then one sequential HGET per due sender (1 + E trips).

        A sender whose JSON is gone (deleted between the two steps) is skipped, and one re-armed
        into the future meanwhile is filtered out: that costs no round trip, so the baseline
        gets the benefit of the doubt.
        """
        cutoff = self._check_time_for_expired(cutoff_time)
        senders = cast(list[str], self.client.zrangebyscore(self.timers_key, "-inf", float(cutoff)))
        timers = []
        for sender_id in senders:
            raw = cast(str | None, self.client.hget(self.data_key, sender_id))
            if raw is not None:
                timers.append(_decode(raw))
        return self._filter_expired(timers, cutoff)


def _decode(raw: str) -> SessionTimer:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"timer JSON must be an object, not {type(data).__name__}")
    return SessionTimer.from_dict(data)
