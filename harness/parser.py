"""The `timerlab` command line: every subcommand, its options and their types."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from pathlib import Path

from harness import commands
from servers import TOPOLOGIES


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--version", action="version", version=f"timerlab {version()}")
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")

    def scheduler_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--scheduler",
            metavar="ADDRESS|local",
            help="run on a Dask cluster: a scheduler address, or `local` for a LocalCluster "
            "of --jobs workers (needs timerlab[scale])",
        )

    def slice_options(command: argparse.ArgumentParser, items: str, kind: str, merge: str) -> None:
        """`--shard K/N` and `--merge` (`harness.shards`): one slice per CI job, then one result."""
        command.add_argument(
            "--shard", metavar="K/N", help=f"run only slice K of N of {items} (a CI matrix job)"
        )
        command.add_argument(
            "--merge", type=Path, nargs="+", metavar=kind, help=f"combine {merge} (runs nothing)"
        )

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

    sim = subcommands.add_parser("sim", help="one simulated run, checked")
    run_options(sim, seed_required=True)
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument("--no-report", action="store_true", help="skip the HTML report")
    sim.set_defaults(handler=commands.sim)

    gate = subcommands.add_parser("gate", help="many seeded runs in parallel: the CI gate")
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
    slice_options(gate, "the seeds", "JSON", "the --json summaries of every slice into one verdict")
    scheduler_option(gate)
    gate.set_defaults(handler=commands.gate)

    replay = subcommands.add_parser("replay", help="rerun a seed bit for bit")
    run_options(replay, seed_required=True)
    replay.add_argument("--out", type=Path, required=True)
    replay.add_argument("--expect-hash", help="fail unless the history hashes to this")
    replay.set_defaults(handler=commands.replay)

    shrink = subcommands.add_parser("shrink", help="the smallest plan that still fails")
    run_options(shrink, seed_required=True)
    shrink.add_argument("--rule", help="keep this rule broken (default: the first one)")
    shrink.add_argument("--out", type=Path, default=Path("runs/shrunk"))
    shrink.set_defaults(handler=commands.shrink)

    bench = subcommands.add_parser(
        "bench", help="benchmarks: ours vs a Rasa-style baseline vs the limit"
    )
    bench.add_argument(
        "group",
        nargs="?",
        default="all",
        choices=("all", "store", "dropin", "claim", "memory", "sim"),
    )
    bench.add_argument("--out", type=Path, default=Path("reports/bench"))
    bench.add_argument("--quick", action="store_true", help="small sizes: checks every row runs")
    bench.add_argument("--repeats", type=int, default=3, help="median of this many (at least 3)")
    bench.set_defaults(handler=commands.bench)

    load = subcommands.add_parser("load", help="Locust load on real pods and Redis, with faults")
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
    load.set_defaults(handler=commands.load)

    sweep = subcommands.add_parser("sweep", help="capacity planning over a grid of simulated runs")
    sweep.add_argument("--pods", type=int_list, default=[1, 2, 4])
    sweep.add_argument("--conversations", type=int_list, default=[200, 1000])
    sweep.add_argument(
        "--message-rate", type=float_list, default=[0.2], help="msg/s per conversation"
    )
    sweep.add_argument("--timeout", type=float_list, default=[30.0], help="session timeouts (s)")
    sweep.add_argument("--poll-interval", type=float_list, default=[1.0])
    sweep.add_argument("--duration", type=float, default=300.0, help="simulated seconds of traffic")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    sweep.add_argument(
        "--seeds", type=int, default=1, help="runs per point (seeds 1..K): median and spread"
    )
    sweep.add_argument(
        "--full",
        action="store_true",
        help="run every point in the full simulator (judged; ~20-50x slower than capacity mode)",
    )
    sweep.add_argument("--slo-lateness", type=float, help="p99 fire lateness target (s)")
    sweep.add_argument("--bench", type=Path, default=Path("reports/bench/results.json"))
    sweep.add_argument("--round-trip", type=float, default=0.0005, help="seconds per Redis call")
    sweep.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="timerlab load runs to compare the simulator with (a light one, one near "
        "saturation, one past it)",
    )
    costs = sweep.add_mutually_exclusive_group()
    costs.add_argument(
        "--costs",
        type=Path,
        metavar="JSON",
        help="service times of Redis and of the pods (seconds; sim/costs.py names the fields)",
    )
    costs.add_argument(
        "--no-costs", action="store_true", help="work takes no simulated time (no knee)"
    )
    scheduler_option(sweep)
    slice_options(
        sweep, "the grid's points", "DIR", "the slices' output directories into one sweep"
    )
    sweep.add_argument("--out", type=Path, default=Path("reports/sweep"))
    sweep.set_defaults(handler=commands.sweep)

    report = subcommands.add_parser("report", help="an HTML report of a sim or load run")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--out", type=Path, help="default: RUN_DIR/report")
    report.add_argument("--render", action="store_true", help="also screenshot it in Chromium")
    report.set_defaults(handler=commands.report)

    config = subcommands.add_parser("config", help="check a timer_store configuration")
    config.add_argument("action", choices=("check",))
    config.add_argument("file", type=Path, help="an endpoints.yml")
    config.add_argument("--section", default="timer_store")
    config.add_argument(
        "--connect", action="store_true", help="also reach the store (Redis: ping and checks)"
    )
    config.set_defaults(handler=commands.config)

    topology = subcommands.add_parser("topology", help="start or stop real Redis servers")
    topology.add_argument("action", choices=("up", "down"))
    topology.add_argument("kind", choices=tuple(TOPOLOGIES))
    topology.add_argument(
        "--persistence", choices=("none", "rdb", "aof_everysec", "aof_always"), default="none"
    )
    topology.add_argument("--run-dir", type=Path, default=None)
    topology.set_defaults(handler=commands.topology)
    return parser


def version() -> str:
    try:
        return importlib.metadata.version("timerlab")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def int_list(text: str) -> list[int]:
    """`1,2,4` or `1e3,1e4` as integers."""
    try:
        values = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"numbers must be at least 1: {text!r}")
    return values


def float_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"numbers must be positive: {text!r}")
    return values
