"""Row `memory`: Redis bytes per stored timer, at 100,000 and at 1,000,000 timers.

A deployment keeps one timer per live conversation, so this is what the timers cost in Redis
RAM. The same timers (36-character UUID sender and session ids, metadata {"channel": "web"},
fractional Unix times) are stored in each design's layout, and the figure is the growth of
INFO `used_memory` divided by the number of timers:

- ours: our layout (sorted set + hash of "<version>|<instance>|[session, metadata]"), as
  `write_timer` leaves it;
- baseline: Rasa's layout (sorted set + hash of the whole timer as JSON);
- limit: the bare minimum, one sorted set of sender -> time (a timer store cannot keep less).

Each layout is measured alone on an emptied server (FLUSHALL, then MEMORY PURGE), filled to the
first size, measured, filled on to the second, measured. The fill connection is closed before
each reading, as its query buffer would count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks.rows.common import (
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
    pack,
    rasa_commands,
    zset_commands,
)

NAME = "memory"
WAYS = ("ours", "baseline", "limit")
PREFIX = "mem"


def _sizes(quick: bool) -> tuple[int, int]:
    return (10_000, 50_000) if quick else (100_000, 1_000_000)


def _label(count: int) -> str:
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count // 1000}k"


def _packed(way: str, timers: Sequence[TimerSpec], first: int) -> tuple[list[bytes], list[bytes]]:
    """The fill of one layout, packed once for every repeat: (up to `first`, the rest)."""
    head, tail = timers[:first], timers[first:]
    if way == "ours":
        keys = ours_keys(PREFIX)
        parts = (
            ours_commands(keys, head, seed=1),
            ours_commands(keys, tail, seed=2, first_version=first + 1),
        )
    elif way == "baseline":
        parts = (rasa_commands(PREFIX, head), rasa_commands(PREFIX, tail))
    else:
        parts = (zset_commands("mem:due", head), zset_commands("mem:due", tail))
    return [pack(command) for command in parts[0]], [pack(command) for command in parts[1]]


def used_memory(server: Server) -> int:
    """`used_memory` once allocator caches are purged and a moment has passed for Redis's cron
    to release client buffers."""
    admin = server.sync_client()
    try:
        admin.memory_purge()
        time.sleep(0.2)
        return int(admin.info("memory")["used_memory"])
    finally:
        admin.close()


def run(ctx: RowContext) -> RowResult:
    first, second = _sizes(ctx.quick)
    ctx.progress(f"{NAME}: generating {second:,} timers")
    timers = make_timers(second, time.time() + 300.0, 0.001, seed=5)
    fills = {way: _packed(way, timers, first) for way in WAYS}
    lines = {count: Line(NAME, _label(count), "B", "lower") for count in (first, second)}
    for line in lines.values():
        line.target = Target("≤0.7x base bytes", min_vs_base=1 / 0.7)
    with fresh_redis(ctx, NAME) as topology:
        server = Server.of(topology)
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats}")
            for way in ctx.repeat_order(WAYS, repeat):
                admin = server.sync_client()
                admin.flushall()
                admin.close()
                empty = used_memory(server)
                bulk_load(server, fills[way][0])
                at_first = used_memory(server)
                bulk_load(server, fills[way][1])
                at_second = used_memory(server)
                getattr(lines[first], way).append((at_first - empty) / first)
                getattr(lines[second], way).append((at_second - empty) / second)
    for line in lines.values():
        ours, baseline = line.ours_median, line.baseline_median
        if ours is not None and baseline is not None:
            line.notes.append(f"ours/base = {ours / baseline:.2f} of the bytes")
    return RowResult(NAME, list(lines.values()))
