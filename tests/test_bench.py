"""The benchmark suite (`timerlab bench`): it runs every row, and its fills do not lie.

The suite's figures are only worth something if the data it measures is what the stores
really write, so the fast bulk fills are checked here against `RedisTimerStore.write_timer`
and `RasaRedisTimerStore.store_timer`. The smoke run checks that every row produces numbers,
not that they meet the targets (those are findings, reported in the table).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from benchmarks.rows.claim import tally
from benchmarks.rows.common import (
    METADATA,
    Line,
    Server,
    Target,
    bulk_load,
    make_timers,
    ours_commands,
    ours_keys,
    pack,
    rasa_commands,
    rasa_json,
    rasa_keys,
)
from benchmarks.runner import GROUPS, ROWS, fmt_ratio, fmt_value, run_bench
from harness.parser import build_parser
from servers import StandaloneTopology
from store.timer import SessionTimer
from tests.conftest import unique_prefix

RECORD_HEAD = re.compile(r"^\d+\|[A-Za-z0-9_-]{12}\|")


# -- the smoke run -----------------------------------------------------------------------------


@pytest.mark.redis
def test_quick_run_gives_numbers_for_every_row(tmp_path: Path) -> None:
    report = run_bench("all", tmp_path, quick=True, repeats=1, progress=False)

    assert [row.name for row in report.rows] == list(ROWS)
    for row in report.rows:
        assert row.error is None, f"{row.name}: {row.error}"
        assert row.lines, row.name
        for line in row.lines:
            figures = {"ours": line.ours_median, "limit": line.limit_median}
            if row.name != "sim":  # the simulator has no Rasa counterpart
                figures["baseline"] = line.baseline_median
            for way, value in figures.items():
                assert value is not None, f"{line.label}: no {way} figure"
                assert math.isfinite(value), f"{line.label}: {way} = {value}"
                assert value > 0, f"{line.label}: {way} = {value}"
            assert line.vs_limit is not None
            assert line.vs_limit > 0
    claim_lines = next(row for row in report.rows if row.name == "claim").lines
    for line in claim_lines:  # correctness is asserted even in the smoke run
        assert line.counts["ours duplicates"] == [0]
        assert line.counts["ours missing"] == [0]

    table = report.table()
    for name in ROWS:
        assert re.search(rf"^\| {name}\b", table, re.MULTILINE), f"{name} missing from the table"
    assert max(len(text) for text in table.splitlines()) <= 100

    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["quick"] is True
    assert [run["name"] for run in data["row_runs"]] == list(ROWS)
    assert {line["row"] for line in data["rows"]} == set(ROWS)
    memory = [line for line in data["rows"] if line["row"] == "memory"]
    assert all(isinstance(line["ours"], float) for line in memory)  # `timerlab sweep` reads it
    assert (tmp_path / "table.md").read_text(encoding="utf-8").strip() == table.strip()
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_group_and_bad_repeats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown bench group"):
        run_bench("everything", tmp_path)
    with pytest.raises(ValueError, match="repeats"):
        run_bench("sim", tmp_path, repeats=0)
    assert set(GROUPS["all"]) == set(ROWS)


def test_the_command_line_offers_every_bench_group() -> None:
    parser = build_parser()
    for group in GROUPS:
        assert parser.parse_args(["bench", group]).group == group
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "everything"])


# -- the fills write what the stores write -----------------------------------------------------


def _server(topology: StandaloneTopology) -> Server:
    return Server.of(topology)


@pytest.mark.redis
async def test_our_fill_matches_what_write_timer_stores(
    redis_standalone: StandaloneTopology,
) -> None:
    server = _server(redis_standalone)
    timer = make_timers(1, time.time() + 60.0, 1.0, seed=3)[0]
    written, filled = unique_prefix(), unique_prefix()
    store, reader = server.ours_store(written), server.ours_store(filled)
    try:
        await store.write_timer(timer.sender, timer.session, timer.when, METADATA)
        bulk_load(server, ours_commands(ours_keys(filled), [timer], seed=1))
        reread = await reader.get_timer(timer.sender)
    finally:
        await store.aclose()
        await reader.aclose()
    assert reread == SessionTimer(timer.sender, timer.session, timer.when, METADATA)

    client = server.sync_client()
    try:
        layouts = [_our_layout(client, prefix, timer.sender) for prefix in (written, filled)]
    finally:
        client.close()
    assert layouts[0] == layouts[1]


def _our_layout(client: redis.Redis, prefix: str, sender: str) -> dict[str, Any]:
    """Everything our store keeps for one timer, minus the random instance id."""
    keys = ours_keys(prefix)
    record = cast(str, client.hget(keys.rec, sender))
    assert RECORD_HEAD.match(record), record
    meta = cast(dict[str, str], client.hgetall(keys.meta))
    return {
        "types": {
            key.rsplit(":", 1)[1]: client.type(key) for key in keys.all() if client.exists(key)
        },
        "score": client.zscore(keys.due, sender),
        "version": record.split("|", 1)[0],
        "body": RECORD_HEAD.sub("", record),
        "meta": sorted(meta),
        "seq": meta["seq"],
    }


@pytest.mark.redis
async def test_baseline_fill_matches_what_rasa_stores(
    redis_standalone: StandaloneTopology,
) -> None:
    server = _server(redis_standalone)
    timer = make_timers(1, time.time() + 60.0, 1.0, seed=4)[0]
    written, filled = unique_prefix(), unique_prefix()
    baseline = server.baseline_store(written)
    try:
        await baseline.store_timer(timer.sender, timer.session, timer.when, METADATA)
    finally:
        baseline.close()
    bulk_load(server, rasa_commands(filled, [timer]))
    client = server.sync_client()
    try:
        stored = []
        for prefix in (written, filled):
            zset, data = rasa_keys(prefix)
            stored.append((client.zscore(zset, timer.sender), client.hget(data, timer.sender)))
    finally:
        client.close()
    assert stored[0] == stored[1]
    assert stored[1][1] == rasa_json(timer)


def test_pack_speaks_the_redis_protocol() -> None:
    command = ["HSET", "k", "ünïcode", "a b\r\nc"]
    # redis-py's own packing, as the reference; building a Connection does not connect.
    expected = b"".join(redis.connection.Connection().pack_command(*command))
    assert pack(command) == expected


# -- the report's arithmetic --------------------------------------------------------------------


def test_ratios_read_as_times_better_and_times_the_limit() -> None:
    rate = Line("r", "c", "ops/s", "higher", ours=[10.0, 30.0, 20.0], baseline=[5.0],
                limit=[40.0], target=Target("t", min_vs_base=3.0))  # fmt: skip
    assert rate.vs_base == 4.0  # median 20 against 5
    assert rate.vs_limit == 2.0  # the limit does 40, twice as much
    assert rate.verdict() is True

    latency = Line("e", "c", "s", "lower", ours=[0.2], baseline=[2.0], limit=[0.1],
                   target=Target("t", min_vs_base=10.0, max_vs_limit=1.5))  # fmt: skip
    assert latency.vs_base == pytest.approx(10.0)
    assert latency.vs_limit == pytest.approx(2.0)
    assert latency.verdict() is False  # twice the limit's time misses the 1.5x bound

    exact = Line("c", "4", "claims/s", "higher", ours=[9.0], baseline=[1.0],
                 target=Target("t", min_vs_base=5.0, exact=True),
                 counts={"ours duplicates": [0, 1]})  # fmt: skip
    assert exact.verdict() is False  # fast is not enough with a duplicate

    assert Line("x", "", "s", "lower").verdict() is None


def test_duplicates_and_misses_are_counted_across_pods() -> None:
    reports = [{"fired": ["a", "b"]}, {"fired": ["b", "z"]}]
    assert tally(reports, {"a", "b", "c"}) == (2, 1)  # b twice, z unknown; c never fired


def test_figures_fit_the_table() -> None:
    assert fmt_value(12345.0, "ops/s") == "12.3k/s"
    assert fmt_value(0.0153, "s") == "15.3ms"
    assert fmt_value(2.013, "s") == "2.01s"
    assert fmt_value(331.4, "B") == "331B"
    assert fmt_value(None, "s") == "n/a"
    assert fmt_ratio(15.74) == "15.7x"
    assert fmt_ratio(0.8123) == "0.81x"
    assert fmt_ratio(40.0, lower_bound=True) == "≥40.0x"


def test_fast_uuid_text_is_a_version_4_uuid() -> None:
    import random
    import uuid

    from benchmarks.rows.common import uuid4_text

    rng = random.Random(9)
    for _ in range(1000):
        bits = rng.getrandbits(128)
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_the_measured_service_times_are_what_a_sweep_loads(tmp_path: Path) -> None:
    from benchmarks.rows.common import Line, RowResult
    from benchmarks.runner import COSTS_FILE, BenchReport, measured_costs
    from sim.costs import ServiceCosts

    line = Line("dropin", "store c=1", "ops/s", "higher")
    line.extra = {"pod_per_call": [1e-4, 3e-4, 2e-4], "redis_per_command": [1e-5, 2e-5, 3e-5]}
    report = BenchReport([RowResult("dropin", [line])], "2026-11-30T10:00Z", "here", False)
    costs = measured_costs(report)
    assert (costs["pod_per_call"], costs["redis_per_command"]) == (2e-4, 2e-5)
    (tmp_path / COSTS_FILE).write_text(json.dumps(costs), encoding="utf-8")
    loaded = ServiceCosts.load(tmp_path / COSTS_FILE)
    assert (loaded.pod_per_call, loaded.redis_per_command) == (2e-4, 2e-5)
    assert loaded.pod_per_message == ServiceCosts().pod_per_message  # not measured: default
    assert "timerlab bench, 2026-11-30T10:00Z" in loaded.source
