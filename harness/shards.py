"""Splitting a gate across CI jobs, and putting the verdict back together.

`timerlab gate --shard K/N` runs a deterministic slice of the gate's seeds: the K-th of every N,
counted from the first seed. Interleaved slices balance better than blocks, because a seed's
cost depends on its scenario draw, not its position. Each job writes its JSON summary
(`--json`), which records the whole gate it belongs to (scenario, store, seed range, shard).

`timerlab gate --merge A.json B.json ...` reads those summaries and gives one verdict, refusing
anything that would make the verdict lie: slices of different gates, a slice given twice, or
a missing slice. Seeds a slice did not run (it stopped at its first failure) are listed as not
run; they cannot turn a failure into a pass.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ShardError(ValueError):
    """A `--shard` or `--merge` that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Shard:
    """Slice `index` (1-based) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N` with 1 ≤ K ≤ N."""
        k, slash, n = text.partition("/")
        try:
            index, count = int(k), int(n)
        except ValueError:
            index = count = 0
        if not slash or count < 1 or not 1 <= index <= count:
            raise ShardError(f"--shard must be K/N with 1 <= K <= N, not {text!r}")
        return cls(index, count)

    def select(self, seeds: Sequence[int]) -> list[int]:
        """This slice of `seeds`: every `count`-th one, starting at position `index - 1`."""
        return list(seeds[self.index - 1 :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


GATE_KEYS = ("scenario", "store", "store_config", "pods", "plan", "conversations_limit")
"""What makes two slices parts of the same gate, besides the seed range."""

SUMMED = ("armed", "fired")


def merge(paths: Sequence[Path]) -> dict[str, Any]:
    """One gate summary from the summaries of all its slices (see the module docstring)."""
    if not paths:
        raise ShardError("--merge needs the JSON summaries of the slices")
    parts = [_load(path) for path in paths]
    gates = {json.dumps(_identity(part["gate"]), sort_keys=True) for part in parts}
    if len(gates) > 1:
        raise ShardError(
            "the summaries come from different gates (scenario, store, pods, plan or seed "
            f"range differ): {', '.join(str(path) for path in paths)}"
        )
    gate = parts[0]["gate"]
    count = complete_slices([part["gate"].get("shard") for part in parts])
    seeds = sorted((item for part in parts for item in part["seeds"]), key=lambda s: s["seed"])
    planned = range(gate["first_seed"], gate["first_seed"] + gate["seeds"])
    ran = {item["seed"] for item in seeds}
    not_run = [seed for seed in planned if seed not in ran]
    failed = sorted(seed for part in parts for seed in part["failed"])
    errors = sorted(seed for part in parts for seed in part["harness_errors"])
    merged: dict[str, Any] = {
        "command": f"timerlab gate --merge {' '.join(str(path) for path in paths)}",
        "gate": {**gate, "shard": None, "merged_from": count},
        "passed": not failed and not errors and not not_run,
        "seconds": round(max(part["seconds"] for part in parts), 3),
        "seeds": seeds,
        "failed": failed,
        "harness_errors": errors,
        "not_run": not_run,
        **{key: sum(part[key] for part in parts) for key in SUMMED},
        "faults_exercised": _sum(part["faults_exercised"] for part in parts),
        "declared": _sum(part["declared"] for part in parts),
        "slowest": sorted(
            (item for part in parts for item in part["slowest"]), key=lambda s: -s["seconds"]
        )[:3],
    }
    return merged


def complete_slices(shards: Sequence[str | None]) -> int:
    """How many slices `shards` (each `K/N`, or None for a whole run) were cut into, once it
    is checked that they are all the slices of one cut, each exactly once."""
    if None in shards:
        if len(shards) > 1:
            raise ShardError("a whole run cannot be merged with others")
        return 1
    slices = [Shard.parse(str(text)) for text in shards]
    counts = {shard.count for shard in slices}
    if len(counts) > 1:
        raise ShardError(f"the slices were cut differently: {', '.join(map(str, shards))}")
    count = counts.pop()
    seen = Counter(shard.index for shard in slices)
    twice = sorted(index for index, times in seen.items() if times > 1)
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if twice:
        raise ShardError(f"slices given more than once: {', '.join(map(str, twice))}")
    if missing:
        raise ShardError(f"slices missing: {', '.join(f'{k}/{count}' for k in missing)}")
    return count


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShardError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("gate"), dict):
        raise ShardError(f"{path} is not a summary written by `timerlab gate --json`")
    return data


def _identity(gate: dict[str, Any]) -> dict[str, Any]:
    """The gate a slice belongs to: everything but the slice."""
    return {key: gate.get(key) for key in (*GATE_KEYS, "first_seed", "seeds")}


def _sum(counters: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))
