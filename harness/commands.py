"""What each `timerlab` subcommand does, given its parsed arguments (`harness.parser`).

Each handler returns the exit code: 0 pass, 1 a violation, and raises `UsageError` for a
mistake on the command line (exit 2). Heavy imports happen inside the handlers, so that a
store-only install can still run `timerlab config` and `timerlab --version`.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from record.faults import FaultPlan
from sim.spec import RunSpec
from store.errors import StoreUnavailableError


class UsageError(Exception):
    """A mistake in the command line; printed as one line, exit 2."""


HARNESS_ERROR = 3
"""Exit code when timerlab itself failed (never a verdict)."""


def _spec(args: argparse.Namespace, seed: int | None = None) -> RunSpec:
    """The RunSpec the options describe, checked before anything runs."""
    import dataclasses

    from sim.custom import resolve_store_target
    from sim.scenarios import build_spec

    if args.pods < 1:
        raise UsageError("--pods must be at least 1")
    if args.store and args.store_config:
        raise UsageError("give --store or --store-config, not both")
    if args.store:
        resolve_store_target(args.store)
    spec = build_spec(
        args.scenario,
        args.seed if seed is None else seed,
        pods=args.pods,
        store=args.store,
        store_config=_store_section(args.store_config),
    )
    if args.plan:
        spec = spec.with_plan(FaultPlan.load(args.plan, args.pods))
    if args.conversations_limit is not None:
        if args.conversations_limit < 1:
            raise UsageError("--conversations-limit must be at least 1")
        spec = spec.with_workload(
            dataclasses.replace(spec.workload, limit=args.conversations_limit)
        )
    return spec


@functools.cache
def _store_section(path: Path | None) -> dict[str, Any] | None:
    """The `timer_store` section of an endpoints file, checked as production would check it."""
    if path is None:
        return None
    from store.endpoint import load_endpoint_config
    from store.factory import load_store_class
    from store.redis.settings import RedisSettings

    config = load_endpoint_config(path)
    if config is None:
        raise UsageError(f"{path}: no timer_store section")
    kind = config.type or "in_memory"
    if kind in {"in_memory", "in-memory", "memory"}:
        raise UsageError(f"{path}: an in-memory store cannot be shared by pods; nothing to gate")
    if kind == "redis":
        RedisSettings.from_endpoint_config(config)
    else:
        load_store_class(kind)
    return config.as_dict()


def replay_command(args: argparse.Namespace, seed: int) -> str:
    parts = ["timerlab replay", f"--scenario {args.scenario}", f"--seed {seed}"]
    if args.store:
        parts.append(f"--store {args.store}")
    if args.store_config:
        parts.append(f"--store-config {args.store_config}")
    if args.pods != 3:
        parts.append(f"--pods {args.pods}")
    if args.plan:
        parts.append(f"--plan {args.plan}")
    if args.conversations_limit:
        parts.append(f"--conversations-limit {args.conversations_limit}")
    return " ".join(parts) + f" --out runs/replay-{seed}"


def sim(args: argparse.Namespace) -> int:
    from harness.report import build_report
    from harness.simrun import run_and_check

    spec = _spec(args)
    verdict, digest = run_and_check(spec, args.out)
    print(verdict.table())
    print(f"history: {args.out / 'history.csv'} (sha256 {digest[:16]})")
    if not args.no_report:
        print(f"report: {build_report(args.out, verdict=verdict).index}")
    return 0 if verdict.ok else 1


def gate(args: argparse.Namespace) -> int:
    from harness.gate import run_gate
    from harness.gate_output import summary_data, write_json, write_junit
    from harness.report import build_report

    if args.merge:
        return _merge(args)
    if args.seeds < 1 or args.jobs < 1:
        raise UsageError("--seeds and --jobs must be at least 1")
    first = _first_seed(args.first_seed)
    if args.first_seed == "commit":
        print(f"seeds {first}..{first + args.seeds - 1} (from the checked-out commit)")
    seeds = list(range(first, first + args.seeds))
    shard = _shard(args.shard) if args.shard else None
    if shard is not None:
        seeds = shard.select(seeds)
        print(f"slice {shard}: {len(seeds)} of the gate's {args.seeds} seeds")
    specs = [_spec(args, seed) for seed in seeds]
    result = run_gate(
        specs,
        jobs=args.jobs,
        keep_going=args.keep_going,
        keep_dir=args.out,
        scheduler=args.scheduler,
    )
    reports: dict[int, Path] = {}
    for failure in result.failures:
        reports[failure.seed] = build_report(Path(failure.out_dir)).index
        print(f"FAIL seed {failure.seed}: {failure.first_violation}")
        print(f"  rules broken: {', '.join(f'{k}×{v}' for k, v in failure.rules.items())}")
        print(f"  run kept in: {failure.out_dir}")
        print(f"  report: {reports[failure.seed]}")
        print(f"  replay: {replay_command(args, failure.seed)}")
    for error in result.errors:
        print(f"HARNESS ERROR seed {error.seed}: {error.error}")
        print(f"  traceback: {Path(error.out_dir) / 'harness-error.txt'}")
        print(f"  replay: {replay_command(args, error.seed)}")

    def replay(seed: int) -> str:
        return replay_command(args, seed)

    data = summary_data(
        result,
        command=" ".join(["timerlab", *sys.argv[1:]]),
        gate=_gate_identity(args, first, shard),
        replay=replay,
        reports=reports,
    )
    if args.junit:
        write_junit(data, args.junit, suite=_suite(args.scenario, args.store))
    if args.json:
        write_json(args.json, data)
    print(result.summary())
    if result.errors:
        return HARNESS_ERROR
    if result.failures:
        stopped = (
            ""
            if args.keep_going or len(result.outcomes) == len(specs)
            else " (stopped at the first failure; --keep-going runs all)"
        )
        print(f"{len(result.failures)} of {len(result.outcomes)} seeds run failed{stopped}")
        return 1
    return 0


def _shard(text: str) -> Any:
    from harness.shards import Shard, ShardError

    try:
        return Shard.parse(text)
    except ShardError as exc:
        raise UsageError(str(exc)) from None


def _gate_identity(args: argparse.Namespace, first: int, shard: Any) -> dict[str, Any]:
    """What a gate's JSON records of the gate it ran, so `--merge` can tell its slices."""
    return {
        "scenario": args.scenario,
        "store": args.store,
        "store_config": None if args.store_config is None else str(args.store_config),
        "pods": args.pods,
        "plan": None if args.plan is None else str(args.plan),
        "conversations_limit": args.conversations_limit,
        "first_seed": first,
        "seeds": args.seeds,
        "shard": None if shard is None else str(shard),
    }


def _suite(scenario: str, store: str | None) -> str:
    return f"timerlab gate ({scenario}, {store or 'reference store'})"


def _merge(args: argparse.Namespace) -> int:
    """`timerlab gate --merge`: one verdict from the JSON summaries of a gate's slices."""
    from harness.gate_output import write_json, write_junit
    from harness.shards import ShardError, merge

    if args.shard:
        raise UsageError("--merge combines slices; it takes no --shard")
    try:
        data = merge(args.merge)
    except ShardError as exc:
        raise UsageError(str(exc)) from None
    for item in data["seeds"]:
        if not item["passed"]:
            kind = "HARNESS ERROR" if item.get("error") else "FAIL"
            print(f"{kind} seed {item['seed']}: {item.get('error') or item['first_violation']}")
            print(f"  replay: {item['replay']}")
    gate = data["gate"]
    if args.junit:
        write_junit(data, args.junit, suite=_suite(gate["scenario"], gate["store"]))
    if args.json:
        write_json(args.json, data)
    passed = sum(item["passed"] for item in data["seeds"])
    declared = ", ".join(f"{k} {v}" for k, v in data["declared"].items()) or "none"
    print(
        f"{passed} of {len(data['seeds'])} seeds passed across {gate['merged_from']} slice(s) "
        f"(seeds {gate['first_seed']}..{gate['first_seed'] + gate['seeds'] - 1}); "
        f"{data['armed']} timers armed, {data['fired']} fired; declared losses: {declared}"
    )
    if data["not_run"]:
        print(f"{len(data['not_run'])} seeds not run (a slice stopped at its first failure)")
    if data["harness_errors"]:
        return HARNESS_ERROR
    return 0 if data["passed"] else 1


def _first_seed(value: str) -> int:
    """A seed number, or `commit`: a seed derived from the checked-out commit, so every commit
    meets seeds nobody chose, and any failure replays from the printed seed."""
    if value != "commit":
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"--first-seed must be a number or 'commit', not {value!r}") from None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"--first-seed commit needs a git checkout: {exc}") from None
    return FRESH_SEEDS_FROM + int(head[:12], 16) % FRESH_SEED_SPAN


FRESH_SEEDS_FROM = 1_000_000
FRESH_SEED_SPAN = 9_000_000
"""Commit-derived seeds fall in [1,000,000, 10,000,000): never the fixed 1-200."""


def replay(args: argparse.Namespace) -> int:
    from harness.simrun import run_and_check

    spec = _spec(args)
    verdict, digest = run_and_check(spec, args.out)
    print(f"history hash {digest}")
    print(verdict.table())
    if args.expect_hash and args.expect_hash != digest:
        print(f"timerlab: history differs from the expected {args.expect_hash}", file=sys.stderr)
        return 1
    return 0 if verdict.ok else 1


def shrink(args: argparse.Namespace) -> int:
    import yaml

    from harness.shrink import shrink

    spec = _spec(args)
    result = shrink(spec, args.rule)
    if result is None:
        print(
            f"seed {args.seed} passes{' rule ' + args.rule if args.rule else ''}: nothing to shrink"
        )
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    plan_file = args.out / f"plan-seed-{args.seed}.yaml"
    plan_file.write_text(yaml.safe_dump({"faults": result.spec.plan.to_data()}, sort_keys=False))
    print(f"still breaks {result.rule} after {result.attempts} runs with:")
    print(plan_file.read_text(), end="")
    workload = result.spec.workload
    print(f"conversations: the first {workload.limit or workload.conversations}")
    args.plan, args.conversations_limit = plan_file, result.spec.workload.limit
    print(f"replay: {replay_command(args, args.seed)}")
    return 1


def bench(args: argparse.Namespace) -> int:
    from benchmarks.runner import run_bench

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    report = run_bench(args.group, args.out, quick=args.quick, repeats=args.repeats)
    print(report.table())
    print(f"results: {args.out / 'results.json'}")
    return 0


def load(args: argparse.Namespace) -> int:
    from harness.load import judge_load
    from harness.report import build_report
    from loadtest.run import SCENARIOS, LoadOptions, run_load

    if args.scenario not in SCENARIOS:
        raise UsageError(f"unknown load scenario {args.scenario!r}; one of {', '.join(SCENARIOS)}")
    options = LoadOptions(
        scenario=args.scenario,
        users=args.users,
        duration=args.duration,
        pods=args.pods,
        topology=args.topology,
        persistence=args.persistence,
        workers=args.workers,
        shape=args.shape,
        out=args.out,
        store_section=_load_store_section(args),
        loop_stall_bound=args.loop_stall_bound,
    )
    try:
        result = judge_load(run_load(options))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(result.summary())
    print(f"report: {build_report(result.out, verdict=result.verdict).index}")
    return 0 if result.verdict.ok else 1


def _load_store_section(args: argparse.Namespace) -> dict[str, Any] | None:
    """The store a load run's pods build: --store (a class) or --store-config (a section)."""
    if args.store and args.store_config:
        raise UsageError("give --store or --store-config, not both")
    if args.loop_stall_bound <= 0:
        raise UsageError("--loop-stall-bound must be positive")
    if args.store:
        from store.factory import load_store_class

        load_store_class(args.store)
        return {"type": args.store}
    return _store_section(args.store_config)


def sweep(args: argparse.Namespace) -> int:
    from harness.sweep import Limits, grid, sweep, write_sweep

    if args.merge:
        return _merge_sweep(args)
    if args.duration <= 0 or args.jobs < 1 or args.seeds < 1:
        raise UsageError("--duration must be positive, and --jobs and --seeds at least 1")
    points = grid(
        args.pods, args.conversations, args.message_rate, args.timeout, args.poll_interval
    )
    shard = _shard(args.shard) if args.shard else None
    if shard is not None:
        total, points = len(points), shard.select(points)
        if not points:
            raise UsageError(f"--shard {shard}: the grid has {total} point(s); cut it in fewer")
        print(f"slice {shard}: {len(points)} of the grid's {total} points", file=sys.stderr)
    limits = Limits.from_bench(args.bench, args.round_trip)
    costs = _costs(args)
    print(
        f"{len(points)} configurations × {args.seeds} seed(s), {args.duration:g} simulated s each",
        file=sys.stderr,
    )
    table = sweep(
        points,
        args.duration,
        limits,
        jobs=args.jobs,
        slo_lateness=args.slo_lateness,
        seeds=args.seeds,
        costs=costs,
        full=args.full,
        scheduler=args.scheduler,
    )
    calibration = None
    if args.calibration:
        from harness.calibrate import calibrate

        calibration = calibrate(args.calibration, costs)
    index = write_sweep(
        table, limits, args.out, slo=args.slo_lateness, calibration=calibration, costs=costs
    )
    identity = {key: getattr(args, key) for key in SWEEP_KEYS}
    identity["costs"] = None if costs is None else costs.to_data()
    slice_of = {"grid": identity, "shard": None if shard is None else str(shard)}
    (args.out / SWEEP_FILE).write_text(json.dumps(slice_of, indent=2) + "\n", encoding="utf-8")
    print((args.out / "recommendation.txt").read_text(), end="")
    if calibration:
        from harness.calibrate import calibrated_costs, describe

        print(describe(calibration))
        fitted = calibrated_costs(calibration, costs)
        if fitted is not None:
            path = args.out / CALIBRATED_COSTS
            path.write_text(json.dumps(fitted.to_data(), indent=2) + "\n", encoding="utf-8")
            print(f"costs with the pods' measured CPU per message: {path} (use with --costs)")
    print(f"sweep: {index}")
    return 0


CALIBRATED_COSTS = "calibrated-costs.json"
"""Where a sweep with `--calibration` writes its costs with the load runs' `pod_per_message`."""
SWEEP_FILE = "sweep.json"
"""What a sweep's output directory records of the sweep (grid, costs, slice): `--merge`
checks that the slices it combines belong to one sweep."""
SWEEP_KEYS = (
    "pods", "conversations", "message_rate", "timeout", "poll_interval", "duration", "seeds",
    "full",
)  # fmt: skip


def _merge_sweep(args: argparse.Namespace) -> int:
    """`timerlab sweep --merge DIR...`: one capacity table and page from a sweep's slices."""
    import pandas as pd

    from harness.shards import ShardError, complete_slices
    from harness.sweep import POINT, Limits, judge, write_sweep
    from sim.costs import ServiceCosts

    if args.shard:
        raise UsageError("--merge combines slices; it takes no --shard")
    parts = []
    for directory in args.merge:
        try:
            identity = json.loads((directory / SWEEP_FILE).read_text(encoding="utf-8"))
            table = pd.read_csv(directory / "capacity.csv")
        except (OSError, ValueError):
            raise UsageError(f"{directory} is not the output of a timerlab sweep") from None
        parts.append((identity, table))
    if len({json.dumps(identity["grid"], sort_keys=True) for identity, _ in parts}) > 1:
        raise UsageError("the slices come from different sweeps (grid, duration, seeds or costs)")
    try:
        count = complete_slices([identity["shard"] for identity, _ in parts])
    except ShardError as exc:
        raise UsageError(str(exc)) from None
    grid = parts[0][0]["grid"]
    costs = None if grid["costs"] is None else ServiceCosts(**grid["costs"])
    table = pd.concat([table for _, table in parts]).sort_values(POINT, ignore_index=True)
    limits = Limits.from_bench(args.bench, args.round_trip)
    table = judge(table, limits, args.slo_lateness)
    index = write_sweep(
        table, limits, args.out, slo=args.slo_lateness, calibration=None, costs=costs
    )
    whole = {"grid": grid, "shard": None, "merged_from": count}
    (args.out / SWEEP_FILE).write_text(json.dumps(whole, indent=2) + "\n", encoding="utf-8")
    print((args.out / "recommendation.txt").read_text(), end="")
    print(f"sweep: {index} ({len(table)} points from {count} slice(s))")
    return 0


def _costs(args: argparse.Namespace) -> Any:
    """The service times a sweep runs with: `--costs`, else those `timerlab bench` measured
    here (costs.json beside the `--bench` results), else the defaults; none with --no-costs."""
    from benchmarks.runner import COSTS_FILE
    from sim.costs import CostsError, ServiceCosts

    if args.no_costs:
        return None
    path = args.costs
    if path is None:
        path = args.bench.parent / COSTS_FILE
        if not path.exists():
            return ServiceCosts()
    try:
        return ServiceCosts.load(path)
    except CostsError as exc:
        raise UsageError(str(exc)) from None


def report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    if not (args.run_dir / "history.csv").exists() or not (args.run_dir / "run.json").exists():
        raise UsageError(f"{args.run_dir} is not a run directory (no history.csv and run.json)")
    report = build_report(args.run_dir, args.out)
    print(f"report: {report.index}")
    if args.render:
        from harness.render import RenderError, render

        try:
            shown = render(report.index, report.index.with_name("screenshot.png"))
        except RenderError as exc:
            raise UsageError(str(exc)) from None
        print(f"rendered: {shown.screenshot} ({shown.images} images, {shown.broken_images} broken)")
        return 0 if shown.broken_images == 0 else 1
    return 0


def config(args: argparse.Namespace) -> int:
    """Load and build the store an endpoints file describes; every mistake is exit 2."""
    import asyncio

    from store.capabilities import supports_claiming
    from store.endpoint import load_endpoint_config
    from store.factory import create_timer_store
    from store.options import ServiceSettings

    section = load_endpoint_config(args.file, args.section)
    store = create_timer_store(section)
    settings = ServiceSettings.from_mapping(section.as_dict() if section else {})
    described = getattr(getattr(store, "primary", store), "settings", None)
    where = described.describe() if described is not None else type(store).__name__
    # A store with only the five documented methods claims by conditional delete: at most once.
    delivery = settings.delivery if supports_claiming(store) else "at_most_once"
    print(
        f"{args.file}: {args.section} ok: {where}; delivery {delivery}, "
        f"poll every {settings.poll_interval:g} s"
    )
    if args.connect:
        check = getattr(getattr(store, "primary", store), "check", None)
        try:
            warnings = asyncio.run(check()) if check is not None else []
        except StoreUnavailableError as exc:
            print(f"unreachable: {exc}")
            return 1
        for warning in warnings:
            print(f"warning: {warning}")
        print("reachable")
    store.close()
    return 0


def topology(args: argparse.Namespace) -> int:
    import yaml

    from servers import Topology, start_topology

    run_dir: Path = args.run_dir or Path(".timerlab") / f"topology-{args.kind}"
    if args.action == "down":
        if not (run_dir / "topology.json").exists():
            raise UsageError(f"no topology state in {run_dir} (was it started with `up`?)")
        Topology.load(run_dir).stop()
        print(f"stopped {args.kind} in {run_dir}")
        return 0
    topology = start_topology(args.kind, run_dir, persistence=args.persistence)
    topology.detach()
    print(f"# {args.kind} running in {run_dir}; stop with: timerlab topology down {args.kind}")
    print(yaml.safe_dump({"timer_store": topology.timer_store_config()}, sort_keys=False), end="")
    return 0


SIMULATING = (sim, gate, replay, shrink)
"""Handlers whose pods are simulated: their story is the history, so they log errors only."""
