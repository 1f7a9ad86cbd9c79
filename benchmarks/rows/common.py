"""What every benchmark row shares: the result model, test data, fast fills and the Redis set-up.

Why the fills bypass the stores: a row must compare *operations*, and filling 1,000,000 timers
one call at a time would take minutes here. So the data is written straight into each design's
key layout with large pipelined commands, packed by hand (redis-py's own packing costs about
3 µs per argument, which made a 1M fill take 20 s). The layouts written here are exactly what
the stores write; `tests/test_bench.py` checks that against the real `write_timer` and
`store_timer`, so a change of the store's format cannot silently make the fill lie.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import redis

from benchmarks.baselines.rasa_store import RasaRedisTimerStore, rasa_key_prefix
from servers import StandaloneTopology
from store.endpoint import EndpointConfig
from store.redis import RedisTimerStore
from store.redis.codec import encode_body
from store.redis.keys import BucketKeys, KeyScheme
from store.validation import encode_metadata

Better = Literal["higher", "lower"]
W = TypeVar("W")

METADATA: dict[str, Any] = {"channel": "web"}
"""Small metadata, as Rasa channels attach it; the same for every design."""
METADATA_JSON = encode_metadata(METADATA)


# -- the result model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal from issue 7. Each bound is optional; a line passes when every given one holds.

    `min_vs_base` is in "times better than the baseline" (see `Line.vs_base`), `max_vs_limit` in
    "times the limit's cost" (see `Line.vs_limit`), `max_ours` is an absolute bound in the line's
    unit, and `exact` asks that every correctness count (duplicates, missing) be zero.
    """

    text: str
    min_vs_base: float | None = None
    max_vs_limit: float | None = None
    max_ours: float | None = None
    exact: bool = False


@dataclass
class Line:
    """One line of the table: one case of a row, measured ours / baseline / limit per repeat.

    Only medians are compared, and ratios are ratios of medians, so one disturbed repeat on a
    noisy machine cannot swing the result.
    """

    row: str
    case: str
    unit: str
    """"ops/s", "claims/s", "s" or "B"."""
    better: Better
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    limit: list[float] = field(default_factory=list)
    baseline_capped: bool = False
    """The baseline never finished within the row's time limit: its figure is a lower bound."""
    target: Target | None = None
    counts: dict[str, list[int]] = field(default_factory=dict)
    """Correctness counts per repeat (e.g. "ours duplicates"); all must be 0 for an exact target."""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    """Other figures per repeat, reported in the notes and results.json (e.g. sim speed)."""

    @property
    def label(self) -> str:
        return f"{self.row} {self.case}".strip()

    @property
    def ours_median(self) -> float | None:
        return median(self.ours)

    @property
    def baseline_median(self) -> float | None:
        return median(self.baseline)

    @property
    def limit_median(self) -> float | None:
        return median(self.limit)

    @property
    def vs_base(self) -> float | None:
        """How many times better ours is than the baseline: faster, more per second, or fewer
        bytes. Above 1 means ours wins."""
        return _better_factor(self.ours_median, self.baseline_median, self.better)

    @property
    def vs_limit(self) -> float | None:
        """How many times the limit's cost ours pays (1.0 is at the limit, 2.0 twice its cost)."""
        return _better_factor(self.limit_median, self.ours_median, self.better)

    def verdict(self) -> bool | None:
        """True if the target is met, False if missed, None when the line has no target."""
        target = self.target
        if target is None:
            return None
        checks: list[bool] = []
        if target.min_vs_base is not None:
            checks.append(self.vs_base is not None and self.vs_base >= target.min_vs_base)
        if target.max_vs_limit is not None:
            checks.append(self.vs_limit is not None and self.vs_limit <= target.max_vs_limit)
        if target.max_ours is not None:
            ours = self.ours_median
            checks.append(ours is not None and ours < target.max_ours)
        if target.exact:
            checks.append(all(count == 0 for counts in self.counts.values() for count in counts))
        return all(checks)

    def to_data(self) -> dict[str, Any]:
        """One table line as data: medians as plain numbers under "ours" / "baseline" /
        "limit" (what other tools read, e.g. `timerlab sweep` takes the memory row's "ours"),
        every repeat's figure under "samples"."""
        return {
            "row": self.row,
            "case": self.case,
            "label": self.label,
            "unit": self.unit,
            "better": self.better,
            "ours": self.ours_median,
            "baseline": self.baseline_median,
            "limit": self.limit_median,
            "samples": {"ours": self.ours, "baseline": self.baseline, "limit": self.limit},
            "baseline_capped": self.baseline_capped,
            "vs_base": self.vs_base,
            "vs_limit": self.vs_limit,
            "target": None if self.target is None else self.target.text,
            "met": self.verdict(),
            "counts": self.counts,
            "extra": self.extra,
            "notes": self.notes,
        }


def _better_factor(value: float | None, reference: float | None, better: Better) -> float | None:
    """`value` relative to `reference`, as a "times better" factor in the unit's direction."""
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    return value / reference if better == "higher" else reference / value


@dataclass
class RowResult:
    """A row's lines, how long the row took, and the error that stopped it, if any."""

    name: str
    lines: list[Line] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        """How the row ran (its lines are listed apart, flat, in the report's "rows")."""
        return {
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": self.notes,
            "lines": [line.label for line in self.lines],
        }


def median(values: Sequence[float]) -> float | None:
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else None


# -- how a row runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RowContext:
    """What a row is told: its size, its repeats, where to put its Redis, how to report."""

    quick: bool
    repeats: int
    scratch: Path
    progress: Callable[[str], None]

    def repeat_order(self, ways: Sequence[W], repeat: int) -> list[W]:
        """The ways of one repeat, rotated, so no design always runs first (or last) on a
        machine whose speed drifts."""
        shift = repeat % len(ways)
        return [*ways[shift:], *ways[:shift]]


def stderr_progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def quiet_progress(message: str) -> None:
    del message


@contextlib.contextmanager
def fresh_redis(ctx: RowContext, name: str) -> Iterator[StandaloneTopology]:
    """A redis-server of the row's own, without persistence; stopped however the row ends."""
    with StandaloneTopology(ctx.scratch / name, persistence="none") as topology:
        yield topology


@dataclass(frozen=True)
class Server:
    """Where a row's redis-server listens."""

    host: str
    port: int

    @classmethod
    def of(cls, topology: StandaloneTopology) -> Server:
        config = topology.timer_store_config()
        return cls(str(config["host"]), int(config["port"]))

    def sync_client(self, socket_timeout: float = 60.0) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.port, db=0, socket_timeout=socket_timeout,
            decode_responses=True,
        )  # fmt: skip

    def ours_config(self, prefix: str, **overrides: Any) -> EndpointConfig:
        """Our store's section: no fallback, and a socket timeout that a loaded but healthy
        Redis never reaches (the default 0.5 s is for detecting outages, not for benchmarks)."""
        values: dict[str, Any] = {
            "host": self.host, "port": self.port, "db": 0, "key_prefix": prefix,
            "socket_timeout": 5.0, "fallback": False,
        }  # fmt: skip
        values.update(overrides)
        return EndpointConfig(type="redis", **values)

    def ours_store(self, prefix: str, **overrides: Any) -> RedisTimerStore:
        return RedisTimerStore(self.ours_config(prefix, **overrides))

    def baseline_store(self, prefix: str) -> RasaRedisTimerStore:
        """Rasa's store as Rasa configures it (10 s socket timeout, redis-py's retries)."""
        config = EndpointConfig(
            type="redis", host=self.host, port=self.port, db=0, key_prefix=prefix
        )
        return RasaRedisTimerStore(config)


def ours_keys(prefix: str) -> BucketKeys:
    """The key names our store uses for `prefix` on a standalone server (one bucket)."""
    return KeyScheme(prefix, 1).keys(0)


def rasa_keys(prefix: str) -> tuple[str, str]:
    """(sorted set, JSON hash) of the baseline for `prefix`."""
    base = rasa_key_prefix(prefix)
    return f"{base}timers", f"{base}data"


# -- test data ---------------------------------------------------------------------------------


class TimerSpec(NamedTuple):
    """One timer to store: realistic ids (36-char UUIDs), the same for every design."""

    sender: str
    session: str
    when: float


def make_timers(count: int, first: float, step: float, seed: int) -> list[TimerSpec]:
    """`count` timers scheduled from `first`, `step` apart, each with up to 40 % of a step of
    jitter (so the scores are ordinary fractional Unix times, in increasing order, as re-arms
    at now + timeout produce them)."""
    rng = random.Random(seed)
    return [
        TimerSpec(
            uuid4_text(rng.getrandbits(128)),
            uuid4_text(rng.getrandbits(128)),
            first + index * step + rng.random() * step * 0.4,
        )
        for index in range(count)
    ]


def uuid4_text(bits: int) -> str:
    """`str(uuid.UUID(int=bits, version=4))`, without building the object (a million of them
    are made per memory row)."""
    digits = f"{bits:032x}"
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


_RASA_METADATA = json.dumps(METADATA)
_quote = json.encoder.encode_basestring_ascii  # what json.dumps uses for strings by default


def rasa_json(timer: TimerSpec) -> str:
    """The value the baseline stores: `json.dumps(SessionTimer(...).to_dict())`, written out
    field by field because it is three times faster (the test compares it with the store's)."""
    return (
        f'{{"sender_id": {_quote(timer.sender)}, "session_id": {_quote(timer.session)}, '
        f'"scheduled_time": {timer.when!r}, "metadata": {_RASA_METADATA}}}'
    )


Command = Sequence[str]


def ours_commands(
    keys: BucketKeys, timers: Sequence[TimerSpec], *, seed: int, first_version: int = 1,
    chunk: int = 1000,
) -> Iterator[Command]:  # fmt: skip
    """Our layout, as `store.lua` leaves it after one `write_timer` per timer in order.

    `due` holds sender -> time, `rec` holds sender -> "<version>|<instance>|<json body>", and
    `meta` holds the version counter and the epoch. Instance ids are 12 random base64url
    characters, as the store draws them.
    """
    rng = random.Random(seed)
    version = first_version
    for start in range(0, len(timers), chunk):
        zadd: list[str] = ["ZADD", keys.due]
        hset: list[str] = ["HSET", keys.rec]
        for timer in timers[start : start + chunk]:
            instance = base64.urlsafe_b64encode(rng.getrandbits(72).to_bytes(9, "big")).decode()
            zadd += (repr(timer.when), timer.sender)
            hset += (
                timer.sender,
                f"{version}|{encode_body(instance, timer.session, METADATA_JSON)}",
            )
            version += 1
        yield zadd
        yield hset
    epoch = f"{rng.getrandbits(48):012x}.0"
    yield ["HSET", keys.meta, "seq", str(version - 1), "epoch", epoch]


def rasa_commands(prefix: str, timers: Sequence[TimerSpec], chunk: int = 1000) -> Iterator[Command]:
    """The baseline's layout: ZADD into `<p>:timer:timers`, the timer's JSON in `<p>:timer:data`."""
    zset, data = rasa_keys(prefix)
    for start in range(0, len(timers), chunk):
        zadd: list[str] = ["ZADD", zset]
        hset: list[str] = ["HSET", data]
        for timer in timers[start : start + chunk]:
            zadd += (repr(timer.when), timer.sender)
            hset += (timer.sender, rasa_json(timer))
        yield zadd
        yield hset


def zset_commands(key: str, timers: Sequence[TimerSpec], chunk: int = 1000) -> Iterator[Command]:
    """The bare minimum a timer needs: sender -> time in one sorted set."""
    for start in range(0, len(timers), chunk):
        zadd: list[str] = ["ZADD", key]
        for timer in timers[start : start + chunk]:
            zadd += (repr(timer.when), timer.sender)
        yield zadd


def pack(command: Command) -> bytes:
    """One command in the Redis protocol (RESP), built in one pass."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        raw = arg.encode("utf-8")
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def bulk_load(server: Server, commands: Iterable[Command | bytes], *, group: int = 8) -> int:
    """Send `commands` (or commands already packed by `pack`) pipelined on a connection of its
    own, then close it; returns how many were sent.

    One group of commands stays in flight while the next is packed, so packing and the server's
    work overlap. The connection is closed at the end because its query buffer (megabytes
    while loading) is counted in `used_memory`, which the memory row measures.
    """
    client = redis.Redis(host=server.host, port=server.port, db=0, socket_timeout=120.0)
    connection: Any = client.connection_pool.get_connection()  # redis-py leaves it untyped
    sent = 0
    in_flight = 0
    try:
        batch: list[bytes] = []
        for command in commands:
            batch.append(command if isinstance(command, bytes) else pack(command))
            if len(batch) == group:
                connection.send_packed_command([b"".join(batch)], check_health=False)
                _read_replies(connection, in_flight)
                in_flight, sent, batch = len(batch), sent + len(batch), []
        if batch:
            connection.send_packed_command([b"".join(batch)], check_health=False)
            sent += len(batch)
        _read_replies(connection, in_flight + len(batch))
    finally:
        connection.disconnect()
        client.close()
    return sent


def _read_replies(connection: Any, count: int) -> None:
    for _ in range(count):
        connection.read_response()  # raises on an error reply, so a bad fill fails loudly


def now() -> float:
    return time.time()
