"""The `timerlab` command.

Exit codes: 0 pass, 1 a violation (the check failed), 2 a usage or configuration problem (one
line on stderr), 3 timerlab itself failed (one line, and the command that replays it). No
traceback reaches the user unless `TIMERLAB_TRACEBACK=1` asks for it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from harness.commands import HARNESS_ERROR, SIMULATING, UsageError, replay_command
from harness.executors import SchedulerError
from harness.parser import build_parser
from record.faults import PlanError
from record.logs import FORMAT_VARIABLE, configure_logging
from servers import TopologyError
from store.errors import InvalidTimerType, InvalidTimerValue, TimerStoreConfigError

Handler = Callable[[argparse.Namespace], int]
EXPECTED = (
    UsageError,
    SchedulerError,
    TimerStoreConfigError,
    InvalidTimerType,
    InvalidTimerValue,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ[FORMAT_VARIABLE] = args.log_format  # the pods and workers it starts follow
    configure_logging(logging.WARNING if args.quiet else logging.INFO)
    if os.getcwd() not in sys.path:  # custom stores load from the project, as in Rasa
        sys.path.insert(0, os.getcwd())
    handler: Handler = args.handler
    if handler in SIMULATING:
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
    "trustme": "load", "prometheus_client": "metrics", "distributed": "scale", "dask": "scale",
}  # fmt: skip
"""The extra (`pip install 'timerlab[EXTRA]'`) that brings each optional package."""


def _internal_error(exc: Exception, args: argparse.Namespace) -> int:
    """One line for a failure of timerlab itself (exit 3), with the replay command if any."""
    if os.environ.get("TIMERLAB_TRACEBACK") == "1":
        traceback.print_exc()
    where = ""
    if getattr(args, "seed", None) is not None and hasattr(args, "scenario"):
        where = f"; replay: {replay_command(args, args.seed)}"
    print(
        f"timerlab: internal error ({type(exc).__name__}: {exc}){where}; "
        "TIMERLAB_TRACEBACK=1 shows the traceback",
        file=sys.stderr,
    )
    return HARNESS_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
