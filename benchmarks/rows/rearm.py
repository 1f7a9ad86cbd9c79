"""Row `rearm`: how many `schedule_timer` calls per second one pod's event loop completes.

Every user message re-arms its conversation's timer, so this is the store's hottest path. All
three designs re-arm the same 1,000 already-armed conversations, at concurrency 1 (one request
at a time) and 64 (a busy pod's handlers awaiting the store together):

- ours: `TimerService.schedule_timer` over `RedisTimerStore` (one Lua call);
- baseline: `RasaTimerManager.schedule`: a delete, then a store, on the sync client, so the
  64 "concurrent" calls in fact run one after the other inside the event loop;
- limit: the fewest commands that replace a timer and its data, on redis-py asyncio: one MULTI
  of ZADD + HSET per re-arm at concurrency 1; at concurrency 64 the 64 in-flight re-arms need
  not wait for each other, so they go as one pipelined MULTI (64 ZADDs and HSETs) per round
  trip. That is the server's ceiling for this work, and what client-side batching could reach.

Each figure is calls completed during a fixed window divided by the window.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio

from benchmarks.baselines.rasa_manager import RasaTimerManager
from benchmarks.rows.common import (
    METADATA,
    Line,
    RowContext,
    RowResult,
    Server,
    Target,
    TimerSpec,
    bulk_load,
    fresh_redis,
    make_timers,
    ours_commands,
    ours_keys,
    rasa_commands,
    rasa_keys,
)
from store.clock import SystemClock
from store.service import TimerService

NAME = "rearm"
WAYS = ("ours", "baseline", "limit")
CONCURRENCY = (1, 64)
CONVERSATIONS = 1000
TIMEOUT = 300.0
"""Seconds each re-arm schedules ahead (any value works; this is Rasa's usual order)."""

ReArm = Callable[[TimerSpec], Awaitable[object]]


async def _noop_fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
    del sender_id, session_id, scheduled_time


async def throughput(
    rearm: ReArm, timers: Sequence[TimerSpec], concurrency: int, seconds: float
) -> float:
    """Calls per second that `concurrency` tasks complete in `seconds` (each task cycles through
    its own slice of the conversations)."""
    deadline = time.perf_counter() + seconds
    done = [0] * concurrency

    async def task(index: int) -> None:
        position = index
        while time.perf_counter() < deadline:
            await rearm(timers[position % len(timers)])
            done[index] += 1
            position += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(task(index) for index in range(concurrency)))
    return sum(done) / (time.perf_counter() - started)


def _fill(server: Server, way: str, prefix: str, timers: Sequence[TimerSpec]) -> None:
    """Arm every conversation first, in the design's own layout: each call is a re-arm."""
    if way == "ours":
        bulk_load(server, ours_commands(ours_keys(prefix), timers, seed=1))
    else:  # the limit writes the baseline's layout, with the fewest commands
        bulk_load(server, rasa_commands(prefix, timers))


async def _one_repeat(
    server: Server, repeat: int, order: Sequence[str], seconds: float, timers: Sequence[TimerSpec]
) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    for way in order:
        rearm, close = await _build(server, way, _prefix(repeat, way))
        try:
            for concurrency in CONCURRENCY:
                # Open the connections and load the scripts this concurrency needs before the
                # clock runs, or the first window would time connection set-up.
                for _ in range(3):
                    await asyncio.gather(*(rearm(timers[i]) for i in range(concurrency)))
                if way == "limit" and concurrency > 1:
                    rate = await limit_throughput(
                        server, _prefix(repeat, way), timers, concurrency, seconds
                    )
                else:
                    rate = await throughput(rearm, timers, concurrency, seconds)
                results[(way, concurrency)] = rate
        finally:
            await close()
    return results


def _prefix(repeat: int, way: str) -> str:
    return f"r{repeat}{way[0]}"


async def _build(
    server: Server, way: str, prefix: str
) -> tuple[ReArm, Callable[[], Awaitable[None]]]:
    """The re-arm call of one design, and how to close it."""
    if way == "ours":
        store = server.ours_store(prefix)
        service = TimerService(store, SystemClock(), _noop_fire)

        async def ours(timer: TimerSpec) -> object:
            return await service.schedule_timer(timer.sender, timer.session, TIMEOUT, METADATA)

        return ours, store.aclose
    if way == "baseline":
        baseline = server.baseline_store(prefix)
        manager = RasaTimerManager(baseline, _noop_fire)

        async def rasa(timer: TimerSpec) -> object:
            return await manager.schedule(timer.sender, timer.session, TIMEOUT, METADATA)

        async def close_baseline() -> None:
            baseline.close()

        return rasa, close_baseline
    client = redis.asyncio.Redis(
        host=server.host, port=server.port, db=0, socket_timeout=5.0, decode_responses=True
    )

    async def limit(timer: TimerSpec) -> object:
        return await _limit_batch(client, prefix, [timer])

    return limit, client.aclose


async def _limit_batch(
    client: redis.asyncio.Redis, prefix: str, timers: Sequence[TimerSpec]
) -> object:
    """Re-arm `timers` in one round trip: one MULTI holding a ZADD and an HSET per timer."""
    zset, data = rasa_keys(prefix)
    when = time.time() + TIMEOUT
    pipe = client.pipeline(transaction=True)
    for timer in timers:
        body = {"sender_id": timer.sender, "session_id": timer.session}
        value = json.dumps({**body, "scheduled_time": when, "metadata": METADATA})
        pipe.zadd(zset, {timer.sender: when})
        pipe.hset(data, timer.sender, value)
    return await pipe.execute()


async def limit_throughput(
    server: Server, prefix: str, timers: Sequence[TimerSpec], concurrency: int, seconds: float
) -> float:
    """The limit at `concurrency` > 1: that many in-flight re-arms need not wait for each
    other, so the fewest round trips is one pipelined MULTI for all of them."""
    client = redis.asyncio.Redis(
        host=server.host, port=server.port, db=0, socket_timeout=5.0, decode_responses=True
    )
    try:
        await _limit_batch(client, prefix, timers[:concurrency])
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        done, position = 0, 0
        while time.perf_counter() < deadline:
            batch = [timers[(position + i) % len(timers)] for i in range(concurrency)]
            await _limit_batch(client, prefix, batch)
            done += concurrency
            position += concurrency
        return done / (time.perf_counter() - started)
    finally:
        await client.aclose()


def run(ctx: RowContext) -> RowResult:
    seconds = 0.25 if ctx.quick else 1.0
    timers = make_timers(CONVERSATIONS, time.time() + TIMEOUT, 0.01, seed=7)
    lines = {
        concurrency: Line(NAME, f"c={concurrency}", "ops/s", "higher")
        for concurrency in CONCURRENCY
    }
    lines[64].target = Target("≥3x base", min_vs_base=3.0)
    with fresh_redis(ctx, NAME) as topology:
        server = Server.of(topology)
        admin = server.sync_client()
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats}")
            order = ctx.repeat_order(WAYS, repeat)
            for way in order:
                _fill(server, way, _prefix(repeat, way), timers)
            results = asyncio.run(_one_repeat(server, repeat, order, seconds, timers))
            for (way, concurrency), rate in results.items():
                getattr(lines[concurrency], way).append(rate)
            admin.flushdb()
        admin.close()
    for line in lines.values():
        line.notes.append(
            f"{CONVERSATIONS} armed conversations re-armed for {seconds:g} s per design"
        )
    return RowResult(NAME, list(lines.values()))
