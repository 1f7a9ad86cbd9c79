"""Row `dropin`: the five documented methods, one call at a time, as Rasa's manager calls them.

A Rasa user who drops our `RedisTimerStore` into an existing deployment keeps Rasa's own
timer manager. That manager awaits `store_timer` on every message, and on every poll awaits
`get_expired_timers`, then one `delete_timer(sender, only_if_scheduled_time=...)` per due
timer. timerlab's batched `claim_due` is not on that path, so this row measures only the five
methods:

- ours: `RedisTimerStore`'s methods, on its asyncio client;
- baseline: `RasaRedisTimerStore` (`benchmarks/baselines/`), Rasa's store on redis-py's
  synchronous client, as Rasa ships it;
- limit: one `EVALSHA` of the same script ours runs, awaited on a plain `redis.asyncio`
  client, and nothing else: what the asyncio client costs per call before any store code.

Cases: `store_timer` at concurrency 1 and 64 (64 tasks awaiting the store together, a busy
pod), `delete_timer(only_if_scheduled_time)` at concurrency 1 (every delete finds its timer
and removes it), and the manager's poll: `get_expired_timers` with 1,000 due, then one
conditional delete per due timer, one after the other (the limit: the same two scripts on the
bare client). Every poll is checked to have removed exactly the due timers.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio

from benchmarks.baselines.rasa_store import RasaRedisTimerStore
from benchmarks.rows.common import (
    METADATA,
    METADATA_JSON,
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
)
from store.redis import RedisTimerStore
from store.redis.codec import encode_body
from store.redis.scripts import script_source

NAME = "dropin"
WAYS = ("ours", "baseline", "limit")
FIRST = 1_700_000_000.0
STEP = 1.0
POLL_DUE = 1_000

Call = Callable[[int], Awaitable[Any]]
"""One call of the case under test, for the i-th timer."""


def _sizes(quick: bool) -> tuple[float, int, int]:
    """(seconds per throughput window, deletes per run, timers stored for the poll)."""
    return (0.5, 1_000, 5_000) if quick else (2.0, 5_000, 20_000)


async def throughput(call: Call, concurrency: int, seconds: float) -> float:
    """Calls per second that `concurrency` tasks complete in `seconds`."""
    deadline = time.perf_counter() + seconds
    done = [0] * concurrency

    async def task(index: int) -> None:
        position = index
        while time.perf_counter() < deadline:
            await call(position)
            done[index] += 1
            position += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(task(index) for index in range(concurrency)))
    return sum(done) / (time.perf_counter() - started)


async def timed(call: Call, count: int) -> float:
    """Calls per second of `count` calls, one after the other."""
    started = time.perf_counter()
    for index in range(count):
        await call(index)
    return count / (time.perf_counter() - started)


class _Ways:
    """The three ways of one repeat, each on its own key prefix."""

    def __init__(self, server: Server, repeat: int, timers: Sequence[TimerSpec]) -> None:
        self.server = server
        self.timers = timers
        self.prefix = {way: f"d{repeat}{way[0]}" for way in WAYS}
        self.ours: RedisTimerStore = server.ours_store(self.prefix["ours"])
        self.baseline: RasaRedisTimerStore = server.baseline_store(self.prefix["baseline"])
        self.client = redis.asyncio.Redis(
            host=server.host, port=server.port, db=0, socket_timeout=10.0, decode_responses=True
        )
        self.limit_keys = ours_keys(self.prefix["limit"])
        self.shas: dict[str, str] = {}

    async def start(self) -> None:
        for name in ("store", "delete_if", "expired"):
            source = script_source(name)
            await self.client.script_load(source)
            self.shas[name] = hashlib.sha1(source.encode()).hexdigest()

    async def close(self) -> None:
        await self.ours.aclose()
        self.baseline.close()
        await self.client.aclose()

    def store(self, way: str) -> Call:
        timers = self.timers

        async def ours(index: int) -> Any:
            timer = timers[index % len(timers)]
            await self.ours.store_timer(timer.sender, timer.session, timer.when,
                                        METADATA)  # fmt: skip

        async def baseline(index: int) -> Any:
            timer = timers[index % len(timers)]
            await self.baseline.store_timer(timer.sender, timer.session,
                                            timer.when, METADATA)  # fmt: skip

        keys = self.limit_keys

        async def limit(index: int) -> Any:
            timer = timers[index % len(timers)]
            body = encode_body(f"{index:012d}", timer.session, METADATA_JSON)
            await self.client.evalsha(self.shas["store"], 3, keys.due, keys.rec, keys.meta,
                                      timer.sender, repr(timer.when), body, 0,
                                      "bench.0")  # fmt: skip

        return {"ours": ours, "baseline": baseline, "limit": limit}[way]

    def delete(self, way: str) -> Call:
        """Conditional deletes of the stored timers, each finding its timer."""
        timers = self.timers

        async def ours(index: int) -> Any:
            timer = timers[index]
            assert await self.ours.delete_timer(timer.sender, timer.when)

        async def baseline(index: int) -> Any:
            timer = timers[index]
            assert await self.baseline.delete_timer(timer.sender, timer.when)

        keys = self.limit_keys

        async def limit(index: int) -> Any:
            timer = timers[index]
            sha = self.shas["delete_if"]
            assert await self.client.evalsha(sha, 2, keys.due, keys.rec, timer.sender,
                                             repr(timer.when))  # fmt: skip

        return {"ours": ours, "baseline": baseline, "limit": limit}[way]

    async def poll(self, way: str, cutoff: float) -> float:
        """Seconds of one manager poll: the due timers, then a conditional delete of each.

        The limit runs ours's two scripts on the bare client: one `expired`, then one
        `delete_if` per due timer, with nothing decoded but what the deletes need."""
        if way == "limit":
            return await self._limit_poll(cutoff)
        store = self.ours if way == "ours" else self.baseline
        started = time.perf_counter()
        due = await store.get_expired_timers(cutoff)
        for timer in due:
            await store.delete_timer(timer.sender_id, timer.scheduled_time)
        seconds = time.perf_counter() - started
        if len(due) != POLL_DUE or await store.get_expired_timers(cutoff):
            raise AssertionError(f"{way}: the poll left due timers or found {len(due)}")
        return seconds

    async def _limit_poll(self, cutoff: float) -> float:
        keys, shas = self.limit_keys, self.shas
        started = time.perf_counter()
        reply = await self.client.evalsha(shas["expired"], 2, keys.due, keys.rec, repr(cutoff))
        lines = reply.split("\n") if reply else []
        for line in lines:
            sender, score, _ = line.split("\t", 2)
            await self.client.evalsha(shas["delete_if"], 2, keys.due, keys.rec, sender, score)
        seconds = time.perf_counter() - started
        if len(lines) != POLL_DUE:
            raise AssertionError(f"limit: the poll found {len(lines)}")
        return seconds


def _fill(server: Server, ways: _Ways, timers: Sequence[TimerSpec]) -> None:
    """The stored timers, in each way's layout (the limit shares ours)."""
    bulk_load(server, ours_commands(ours_keys(ways.prefix["ours"]), timers, seed=1))
    bulk_load(server, ours_commands(ways.limit_keys, timers, seed=2))
    bulk_load(server, rasa_commands(ways.prefix["baseline"], timers))


async def _measure(
    ways: _Ways, order: Sequence[str], window: float, deletes: int, lines: dict[str, Line]
) -> None:
    await ways.start()
    try:
        for concurrency in (1, 64):
            for way in order:
                if way == "ours" and concurrency == 1:
                    await _costs_of_ours(ways, window, lines["store c=1"])
                    continue
                rate = await throughput(ways.store(way), concurrency, window)
                getattr(lines[f"store c={concurrency}"], way).append(rate)
        for way in order:
            getattr(lines["delete c=1"], way).append(await timed(ways.delete(way), deletes))
        # The deletes took the first `deletes` timers: the poll finds the next POLL_DUE due.
        cutoff = ways.timers[deletes + POLL_DUE - 1].when + STEP / 2
        for way in order:
            getattr(lines["poll 1k due"], way).append(await ways.poll(way, cutoff))
    finally:
        await ways.close()


async def _costs_of_ours(ways: _Ways, window: float, line: Line) -> None:
    """Ours at concurrency 1, and what each call cost: this process's CPU (encoding, the
    socket write, parsing: `pod_per_call` of `sim/costs.py`) and Redis's time in the script
    (`INFO commandstats`: `redis_per_command`). `timerlab bench` writes them to costs.json,
    which `timerlab sweep` uses."""
    admin = ways.server.sync_client()
    before = admin.info("commandstats").get("cmdstat_evalsha", {})
    cpu, wall = time.process_time(), time.perf_counter()
    rate = await throughput(ways.store("ours"), 1, window)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = admin.info("commandstats").get("cmdstat_evalsha", {})
    admin.close()
    calls = rate * wall
    line.ours.append(rate)
    line.extra.setdefault("pod_per_call", []).append(cpu / calls)
    scripts = after.get("calls", 0) - before.get("calls", 0)
    if scripts > 0:
        server = (after.get("usec", 0) - before.get("usec", 0)) / scripts / 1e6
        line.extra.setdefault("redis_per_command", []).append(server)


def run(ctx: RowContext) -> RowResult:
    window, deletes, stored = _sizes(ctx.quick)
    timers = make_timers(stored, FIRST, STEP, seed=13)
    lines = {
        "store c=1": Line(NAME, "store c=1", "ops/s", "higher"),
        "store c=64": Line(NAME, "store c=64", "ops/s", "higher"),
        "delete c=1": Line(NAME, "delete c=1", "ops/s", "higher"),
        "poll 1k due": Line(NAME, "poll 1k", "s", "lower"),
    }
    lines["store c=1"].target = Target("≥1x base, ≤1.3x lim", min_vs_base=1.0, max_vs_limit=1.3)
    lines["store c=64"].target = Target("≥3x base", min_vs_base=3.0)
    lines["delete c=1"].target = Target("≥1x base, ≤1.3x lim", min_vs_base=1.0, max_vs_limit=1.3)
    lines["poll 1k due"].target = Target("≥3x base", min_vs_base=3.0)
    with fresh_redis(ctx, NAME) as topology:
        server = Server.of(topology)
        admin = server.sync_client()
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats} (fill {stored:,} x 3)")
            ways = _Ways(server, repeat, timers)
            _fill(server, ways, timers)
            order = ctx.repeat_order(WAYS, repeat)
            asyncio.run(_measure(ways, order, window, deletes, lines))
            admin.flushdb()
        admin.close()
    lines["delete c=1"].notes.append("delete_timer(only_if_scheduled_time), each finding its timer")
    lines["poll 1k due"].notes.append(
        f"{POLL_DUE:,} due of {stored:,}: 1 + {POLL_DUE:,} calls per poll"
    )
    return RowResult(NAME, list(lines.values()))
