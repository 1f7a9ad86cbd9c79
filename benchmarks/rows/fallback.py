"""Row `fallback`: time from Redis hanging (SIGSTOP) to the first timer stored in the fallback.

A stalled Redis (a long fork, a VM pause, a full network buffer) does not refuse connections:
it stops answering. What matters is how soon the pod stops waiting and keeps serving. A writer
re-arms a timer every 10 ms; the server is SIGSTOPped; the figure is the time from the stop to
the first write that returns with the timer held in memory.

- ours: `create_timer_store` with `type: redis` and the fallback on, default settings (0.5 s
  socket timeout, no client retries); the write returns once `FallbackTimerStore` is active;
- baseline: `RasaTimerManager.schedule` (sync client, 10 s socket timeout, redis-py's retries,
  then its own 3 tries): it blocks the thread for far longer than the row may wait, so it is
  cut off at the row's time limit and reported as "at least" that (capped). Because a blocked
  baseline only waits on a socket, all its repeats share one outage, each with its own client
  in its own thread and event loop, instead of each costing the full limit;
- limit: the floor for noticing a hung server by timeout: one raw redis-py asyncio write with
  the same 0.5 s socket timeout and no retries, then a dict store.

Redis is always resumed (SIGCONT) afterwards, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from benchmarks.baselines.rasa_manager import RasaTimerManager
from benchmarks.rows.common import (
    METADATA,
    Line,
    RowContext,
    RowResult,
    Server,
    Target,
    TimerSpec,
    fresh_redis,
    make_timers,
    rasa_keys,
)
from servers import StandaloneTopology
from store.factory import create_timer_store
from store.fallback import FallbackTimerStore

NAME = "fallback"
WARM = 0.3
"""Seconds of healthy writes before the stop, so every client is connected and warm."""
PERIOD = 0.01
TIMEOUT = 60.0
DETECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    asyncio.TimeoutError,
)

Write = Callable[[TimerSpec], Awaitable[bool]]
"""Store one timer; True if it landed in the fallback (memory) rather than in Redis."""


@dataclass
class Outage:
    """When the server was stopped (perf_counter), or None while it runs."""

    paused_at: float | None = None


@contextlib.contextmanager
def stopped(topology: StandaloneTopology, outage: Outage) -> Iterator[None]:
    """SIGSTOP the server for the block, and SIGCONT it however the block ends."""
    node = topology.nodes[0]
    topology.pause(node)
    outage.paused_at = time.perf_counter()
    try:
        yield
    finally:
        topology.resume(node)
        outage.paused_at = None


async def _writer(write: Write, timers: Sequence[TimerSpec], outage: Outage) -> float:
    """Write every `PERIOD` until a write lands in the fallback during the outage; returns
    the seconds from the stop to that write's return."""
    index = 0
    while True:
        in_fallback = await write(timers[index % len(timers)])
        paused_at = outage.paused_at
        if in_fallback and paused_at is not None:
            return time.perf_counter() - paused_at
        index += 1
        await asyncio.sleep(PERIOD)


async def _ours_and_limit(
    topology: StandaloneTopology, server: Server, repeat: int, cap: float
) -> tuple[float, float]:
    """One outage, with ours and the limit writing side by side (both only wait on sockets)."""
    store = create_timer_store(
        {**topology.timer_store_config(), "key_prefix": f"f{repeat}o", "fallback": True}
    )
    assert isinstance(store, FallbackTimerStore)
    client = redis.asyncio.Redis(
        host=server.host, port=server.port, db=0, decode_responses=True,
        socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    memory: dict[str, float] = {}
    zset, data = rasa_keys(f"f{repeat}l")

    async def ours(timer: TimerSpec) -> bool:
        await store.store_timer(timer.sender, timer.session, time.time() + TIMEOUT, METADATA)
        return store.active

    async def limit(timer: TimerSpec) -> bool:
        when = time.time() + TIMEOUT
        try:
            pipe = client.pipeline(transaction=True)
            pipe.zadd(zset, {timer.sender: when})
            pipe.hset(data, timer.sender, timer.session)
            await pipe.execute()
        except DETECTION_ERRORS:
            memory[timer.sender] = when
            return True
        return False

    timers = make_timers(200, time.time(), 1.0, seed=repeat)
    outage = Outage()
    tasks = [asyncio.create_task(_writer(write, timers, outage)) for write in (ours, limit)]
    try:
        await asyncio.sleep(WARM)
        for task in tasks:
            if task.done():  # a writer that ended before the outage hit an error: raise it
                task.result()
        with stopped(topology, outage):
            await asyncio.wait(tasks, timeout=cap)
        detected = [task.result() if task.done() else cap for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.drain()  # merge the outage's writes back, as a pod would
        await store.aclose()
        await client.aclose()
    return detected[0], detected[1]


def _baselines(
    topology: StandaloneTopology, server: Server, count: int, cap: float
) -> list[float | None]:
    """`count` baseline writers, each in its own thread and loop, through one shared outage;
    per writer the seconds to its first fallback write, or None if it was still blocked at
    `cap`."""
    outage = Outage()
    stop = threading.Event()
    results: list[float | None] = [None] * count

    async def noop(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        del sender_id, session_id, scheduled_time

    def thread_main(index: int) -> None:
        async def main() -> None:
            store = server.baseline_store(f"f{index}b")
            manager = RasaTimerManager(store, noop)
            timers = make_timers(200, time.time(), 1.0, seed=100 + index)
            position = 0
            try:
                while not stop.is_set():
                    timer = timers[position % len(timers)]
                    await manager.schedule(timer.sender, timer.session, TIMEOUT, METADATA)
                    paused_at = outage.paused_at
                    if manager.fallback_active and paused_at is not None:
                        results[index] = time.perf_counter() - paused_at
                        return
                    position += 1
                    await asyncio.sleep(PERIOD)
            finally:
                store.close()

        asyncio.run(main())

    threads = [
        threading.Thread(target=thread_main, args=(index,), daemon=True, name=f"rasa-{index}")
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM)
        with stopped(topology, outage):
            deadline = time.perf_counter() + cap
            while time.perf_counter() < deadline and any(r is None for r in results):
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30.0)
    return results


def run(ctx: RowContext) -> RowResult:
    cap = 5.0 if ctx.quick else 20.0
    line = Line(NAME, "SIGSTOP", "s", "lower", target=Target("<1s", max_ours=1.0))
    with fresh_redis(ctx, NAME) as topology:
        server = Server.of(topology)
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats} (ours and limit)")
            ours, limit = asyncio.run(_ours_and_limit(topology, server, repeat, cap))
            line.ours.append(ours)
            line.limit.append(limit)
        ctx.progress(f"{NAME}: baseline x{ctx.repeats} in one outage (waits up to {cap:g} s)")
        for seconds in _baselines(topology, server, ctx.repeats, cap):
            if seconds is None:
                line.baseline_capped = True
            line.baseline.append(cap if seconds is None else seconds)
    if line.baseline_capped:
        line.notes.append(
            f"baseline capped: still blocked (no fallback) when the row's {cap:g} s limit hit"
        )
    line.notes.append("writes every 10 ms; ours and limit use a 0.5 s socket timeout")
    return RowResult(NAME, [line])
