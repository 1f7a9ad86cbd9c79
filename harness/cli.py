"""The `timerlab` command.

Every subcommand either succeeds, fails its check (exit 1), or reports a usage or
configuration problem as one line on stderr (exit 2). No traceback reaches the user for a
mistake they can fix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.topology import TopologyError
from store.errors import InvalidTimerType, InvalidTimerValue, TimerStoreConfigError


class UsageError(Exception):
    """A mistake in the command line; printed as one line, exit 2."""


Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (UsageError, TimerStoreConfigError, InvalidTimerType, InvalidTimerValue) as exc:
        print(f"timerlab: {exc}", file=sys.stderr)
        return 2
    except TopologyError as exc:
        print(f"timerlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("timerlab: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timerlab",
        description="Timer stores, and the simulator and load harness that prove them.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="arm and fire a few timers through the service")
    demo.add_argument("--conversations", type=int, default=20)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.set_defaults(handler=_demo)

    topology = commands.add_parser("topology", help="start or stop real Redis servers")
    topology.add_argument("action", choices=("up", "down"))
    topology.add_argument("kind", choices=("standalone", "cluster", "sentinel"))
    topology.add_argument(
        "--persistence", choices=("none", "rdb", "aof_everysec", "aof_always"), default="none"
    )
    topology.add_argument("--run-dir", type=Path, default=None)
    topology.set_defaults(handler=_topology)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    if args.conversations < 1:
        raise UsageError("--conversations must be at least 1")
    summary = asyncio.run(run_demo(args.conversations))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"armed {summary['armed']}, fired {summary['fired']}, "
        f"max lateness {summary['max_lateness_s']:.3f} s -> {args.out / 'summary.json'}"
    )
    return 0 if summary["fired"] == summary["armed"] else 1


def _topology(args: argparse.Namespace) -> int:
    import yaml

    from harness.topology import Topology, start_topology

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
