"""The `timerlab` command.

Exit codes: 0 pass, 1 a violation (the check failed), 2 a usage or configuration problem (one
line on stderr), 3 timerlab itself failed (one line, and the command that replays it). No
traceback reaches the user unless `TIMERLAB_TRACEBACK=1` asks for it.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from record.faults import FaultPlan, PlanError
from record.logs import FORMAT_VARIABLE, configure_logging
from servers import TOPOLOGIES, TopologyError
from sim.spec import RunSpec
from store.errors import (
    InvalidTimerType,
    InvalidTimerValue,
    StoreUnavailableError,
    TimerStoreConfigError,
)


class UsageError(Exception):
    """A mistake in the command line; printed as one line, exit 2."""


Handler = Callable[[argparse.Namespace], int]
EXPECTED = (UsageError, TimerStoreConfigError, InvalidTimerType, InvalidTimerValue)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ[FORMAT_VARIABLE] = args.log_format  # the pods and workers it starts follow
    configure_logging(logging.WARNING if args.quiet else logging.INFO)
    if os.getcwd() not in sys.path:  # custom stores load from the project, as in Rasa
        sys.path.insert(0, os.getcwd())
    handler: Handler = args.handler
    if handler in (_sim, _gate, _replay, _shrink):
        # Simulated pods log like real ones; their story is the history, so keep errors only.
        configure_logging(logging.ERROR)
    try:
        return handler(args)
    except (*EXPECTED, TopologyError, PlanError) as exc:
        print(f"timerlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("timerlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `timerlab ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            return _internal_error(exc, args)
        print(
            f"timerlab: this command needs {exc.name}, which the store alone does not install: "
            f"pip install 'timerlab[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # timerlab's own failure: never a verdict
        return _internal_error(exc, args)


EXTRAS = {
    "simpy": "sim", "fakeredis": "sim", "lupa": "sim", "tqdm": "sim", "junitparser": "sim",
    "pandas": "sim", "matplotlib": "report", "locust": "load", "aiohttp": "load",
    "trustme": "load", "prometheus_client": "metrics",
}  # fmt: skip
"""The extra (`pip install 'timerlab[EXTRA]'`) that brings each optional package."""


HARNESS_ERROR = 3


def _internal_error(exc: Exception, args: argparse.Namespace) -> int:
    """One line for a failure of timerlab itself (exit 3), with the replay command if any."""
    if os.environ.get("TIMERLAB_TRACEBACK") == "1":
        traceback.print_exc()
    where = ""
    if getattr(args, "seed", None) is not None and hasattr(args, "scenario"):
        where = f"; replay: {_replay_command(args, args.seed)}"
    print(
        f"timerlab: internal error ({type(exc).__name__}: {exc}){where}; "
        "TIMERLAB_TRACEBACK=1 shows the traceback",
        file=sys.stderr,
    )
    return HARNESS_ERROR


def _parser() -> argparse.ArgumentParser:
    from sim.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="timerlab",
        description="Timer stores, and the simulator and load harness that prove them.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="log lines as key=value text or as one JSON object each",
    )
    parser.add_argument("--version", action="version", version=f"timerlab {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def run_options(command: argparse.ArgumentParser, *, seed_required: bool) -> None:
        command.add_argument("--scenario", default="swarm", choices=SCENARIOS, metavar="NAME")
        if seed_required:
            command.add_argument("--seed", type=int, required=True)
        command.add_argument(
            "--store", help="a store class (one shared instance) or a pod-stack factory to test"
        )
        command.add_argument(
            "--store-config",
            type=Path,
            metavar="ENDPOINTS_YML",
            help="an endpoints.yml: each pod builds its own store from its timer_store section",
        )
        command.add_argument("--pods", type=int, default=3)
        command.add_argument("--plan", type=Path, help="a fault plan (YAML/JSON) to use instead")
        command.add_argument(
            "--conversations-limit", type=int, help="keep only the first N conversations"
        )

    sim = commands.add_parser("sim", help="one simulated run, checked")
    run_options(sim, seed_required=True)
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument("--no-report", action="store_true", help="skip the HTML report")
    sim.set_defaults(handler=_sim)

    gate = commands.add_parser("gate", help="many seeded runs in parallel: the CI gate")
    run_options(gate, seed_required=False)
    gate.add_argument("--seeds", type=int, default=200)
    gate.add_argument(
        "--first-seed",
        default="1",
        metavar="N|commit",
        help="the first seed; `commit` derives it from the checked-out commit (fresh seeds)",
    )
    gate.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    gate.add_argument(
        "--keep-going", action="store_true", help="run every seed even after a failure"
    )
    gate.add_argument("--out", type=Path, default=Path("runs/gate"), help="where failing runs go")
    gate.add_argument("--junit", type=Path, help="write JUnit XML: one test case per seed")
    gate.add_argument("--json", type=Path, help="write a JSON summary: every seed's outcome")
    gate.set_defaults(handler=_gate)

    replay = commands.add_parser("replay", help="rerun a seed bit for bit")
    run_options(replay, seed_required=True)
    replay.add_argument("--out", type=Path, required=True)
    replay.add_argument("--expect-hash", help="fail unless the history hashes to this")
    replay.set_defaults(handler=_replay)

    shrink = commands.add_parser("shrink", help="the smallest plan that still fails")
    run_options(shrink, seed_required=True)
    shrink.add_argument("--rule", help="keep this rule broken (default: the first one)")
    shrink.add_argument("--out", type=Path, default=Path("runs/shrunk"))
    shrink.set_defaults(handler=_shrink)

    bench = commands.add_parser(
        "bench", help="benchmarks: ours vs a Rasa-style baseline vs the limit"
    )
    bench.add_argument(
        "group", nargs="?", default="all", choices=("all", "store", "claim", "memory", "sim")
    )
    bench.add_argument("--out", type=Path, default=Path("reports/bench"))
    bench.add_argument("--quick", action="store_true", help="small sizes: checks every row runs")
    bench.add_argument("--repeats", type=int, default=3, help="median of this many (at least 3)")
    bench.set_defaults(handler=_bench)

    load = commands.add_parser("load", help="Locust load on real pods and Redis, with faults")
    load.add_argument("--scenario", required=True, metavar="NAME")
    load.add_argument("--users", type=int, default=50)
    load.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    load.add_argument("--pods", type=int, default=3)
    load.add_argument("--topology", choices=tuple(TOPOLOGIES), default="standalone")
    load.add_argument(
        "--persistence",
        choices=("none", "rdb", "aof_everysec", "aof_always"),
        default="aof_everysec",
    )
    load.add_argument("--workers", type=int, default=0, help="Locust workers (distributed mode)")
    load.add_argument("--shape", choices=("steady", "ramp", "spike", "soak"), default="steady")
    load.add_argument("--store", help="a store class each pod builds (type: pkg.module.Class)")
    load.add_argument(
        "--store-config",
        type=Path,
        metavar="ENDPOINTS_YML",
        help="an endpoints.yml: each pod builds its store from its timer_store section",
    )
    load.add_argument(
        "--loop-stall-bound",
        type=float,
        default=1.0,
        help="longest event-loop stall a pod may have, in seconds (rule loop_stall)",
    )
    load.add_argument("--out", type=Path, default=Path("runs/load"))
    load.set_defaults(handler=_load)

    sweep = commands.add_parser("sweep", help="capacity planning over a grid of simulated runs")
    sweep.add_argument("--pods", type=_ints, default=[1, 2, 4])
    sweep.add_argument("--conversations", type=_ints, default=[200, 1000])
    sweep.add_argument("--message-rate", type=_floats, default=[0.2], help="msg/s per conversation")
    sweep.add_argument("--timeout", type=_floats, default=[30.0], help="session timeouts (s)")
    sweep.add_argument("--poll-interval", type=_floats, default=[1.0])
    sweep.add_argument("--duration", type=float, default=300.0, help="simulated seconds of traffic")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    sweep.add_argument("--slo-lateness", type=float, help="p99 fire lateness target (s)")
    sweep.add_argument("--bench", type=Path, default=Path("reports/bench/results.json"))
    sweep.add_argument("--round-trip", type=float, default=0.0005, help="seconds per Redis call")
    sweep.add_argument("--calibration", type=Path, help="a timerlab load run to compare with")
    sweep.add_argument("--out", type=Path, default=Path("reports/sweep"))
    sweep.set_defaults(handler=_sweep)

    report = commands.add_parser("report", help="an HTML report of a sim or load run")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--out", type=Path, help="default: RUN_DIR/report")
    report.add_argument("--render", action="store_true", help="also screenshot it in Chromium")
    report.set_defaults(handler=_report)

    config = commands.add_parser("config", help="check a timer_store configuration")
    config.add_argument("action", choices=("check",))
    config.add_argument("file", type=Path, help="an endpoints.yml")
    config.add_argument("--section", default="timer_store")
    config.add_argument(
        "--connect", action="store_true", help="also reach the store (Redis: ping and checks)"
    )
    config.set_defaults(handler=_config)

    topology = commands.add_parser("topology", help="start or stop real Redis servers")
    topology.add_argument("action", choices=("up", "down"))
    topology.add_argument("kind", choices=tuple(TOPOLOGIES))
    topology.add_argument(
        "--persistence", choices=("none", "rdb", "aof_everysec", "aof_always"), default="none"
    )
    topology.add_argument("--run-dir", type=Path, default=None)
    topology.set_defaults(handler=_topology)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("timerlab")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


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


def _replay_command(args: argparse.Namespace, seed: int) -> str:
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


def _sim(args: argparse.Namespace) -> int:
    from harness.report import build_report
    from harness.simrun import run_and_check

    spec = _spec(args)
    verdict, digest = run_and_check(spec, args.out)
    print(verdict.table())
    print(f"history: {args.out / 'history.csv'} (sha256 {digest[:16]})")
    if not args.no_report:
        print(f"report: {build_report(args.out, verdict=verdict).index}")
    return 0 if verdict.ok else 1


def _gate(args: argparse.Namespace) -> int:
    from harness.gate import run_gate
    from harness.gate_output import summary_data, write_json, write_junit
    from harness.report import build_report

    if args.seeds < 1 or args.jobs < 1:
        raise UsageError("--seeds and --jobs must be at least 1")
    first = _first_seed(args.first_seed)
    if args.first_seed == "commit":
        print(f"seeds {first}..{first + args.seeds - 1} (from the checked-out commit)")
    specs = [_spec(args, seed) for seed in range(first, first + args.seeds)]
    result = run_gate(specs, jobs=args.jobs, keep_going=args.keep_going, keep_dir=args.out)
    reports: dict[int, Path] = {}
    for failure in result.failures:
        reports[failure.seed] = build_report(Path(failure.out_dir)).index
        print(f"FAIL seed {failure.seed}: {failure.first_violation}")
        print(f"  rules broken: {', '.join(f'{k}×{v}' for k, v in failure.rules.items())}")
        print(f"  run kept in: {failure.out_dir}")
        print(f"  report: {reports[failure.seed]}")
        print(f"  replay: {_replay_command(args, failure.seed)}")
    for error in result.errors:
        print(f"HARNESS ERROR seed {error.seed}: {error.error}")
        print(f"  traceback: {Path(error.out_dir) / 'harness-error.txt'}")
        print(f"  replay: {_replay_command(args, error.seed)}")

    def replay(seed: int) -> str:
        return _replay_command(args, seed)

    if args.junit:
        suite = f"timerlab gate ({args.scenario}, {args.store or 'reference store'})"
        write_junit(result, args.junit, suite=suite, replay=replay, reports=reports)
    if args.json:
        command = " ".join(["timerlab", *sys.argv[1:]])
        write_json(args.json, summary_data(result, command=command, replay=replay, reports=reports))
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


def _replay(args: argparse.Namespace) -> int:
    from harness.simrun import run_and_check

    spec = _spec(args)
    verdict, digest = run_and_check(spec, args.out)
    print(f"history hash {digest}")
    print(verdict.table())
    if args.expect_hash and args.expect_hash != digest:
        print(f"timerlab: history differs from the expected {args.expect_hash}", file=sys.stderr)
        return 1
    return 0 if verdict.ok else 1


def _shrink(args: argparse.Namespace) -> int:
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
    print(f"replay: {_replay_command(args, args.seed)}")
    return 1


def _bench(args: argparse.Namespace) -> int:
    from benchmarks.runner import run_bench

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    report = run_bench(args.group, args.out, quick=args.quick, repeats=args.repeats)
    print(report.table())
    print(f"results: {args.out / 'results.json'}")
    return 0


def _load(args: argparse.Namespace) -> int:
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


def _ints(text: str) -> list[int]:
    """`1,2,4` or `1e3,1e4` as integers."""
    try:
        values = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"numbers must be at least 1: {text!r}")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"numbers must be positive: {text!r}")
    return values


def _sweep(args: argparse.Namespace) -> int:
    from harness.sweep import Limits, grid, sweep, write_sweep

    if args.duration <= 0 or args.jobs < 1:
        raise UsageError("--duration must be positive and --jobs at least 1")
    points = grid(
        args.pods, args.conversations, args.message_rate, args.timeout, args.poll_interval
    )
    limits = Limits.from_bench(args.bench, args.round_trip)
    print(f"{len(points)} configurations, {args.duration:g} simulated s each", file=sys.stderr)
    table = sweep(points, args.duration, limits, jobs=args.jobs, slo_lateness=args.slo_lateness)
    calibration = None
    if args.calibration is not None:
        from harness.calibrate import calibrate

        calibration = calibrate(args.calibration)
    index = write_sweep(table, limits, args.out, slo=args.slo_lateness, calibration=calibration)
    print((args.out / "recommendation.txt").read_text(), end="")
    if calibration:
        print(calibration)
    print(f"sweep: {index}")
    return 0


def _report(args: argparse.Namespace) -> int:
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


def _config(args: argparse.Namespace) -> int:
    """Load and build the store an endpoints file describes; every mistake is exit 2."""
    import asyncio

    from store.endpoint import load_endpoint_config
    from store.factory import create_timer_store
    from store.options import ServiceSettings

    section = load_endpoint_config(args.file, args.section)
    store = create_timer_store(section)
    settings = ServiceSettings.from_mapping(section.as_dict() if section else {})
    described = getattr(getattr(store, "primary", store), "settings", None)
    where = described.describe() if described is not None else type(store).__name__
    print(
        f"{args.file}: {args.section} ok: {where}; delivery {settings.delivery}, "
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


def _topology(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
