"""Row `sim`: the simulator's wall time against replaying its store calls without SimPy.

`benchmarks.sim_overhead.measure` runs the reference workload (8 pods, 10,000 conversations,
one simulated hour) in the simulator while recording every call the pods make to the store,
then replays those calls on a fresh embedded Redis in a plain asyncio loop. ours = the
simulator's wall time, limit = the replay's (the store code alone), so "vs limit" is the
simulator's overhead (target: at most 2x). There is no baseline: Rasa has no simulator.
The second line runs capacity mode (`sim/capacity.py`) on the same spec: ours = its wall
time, limit = the full simulator's (target: at least 20x faster, ≤0.05x).

Each repeat runs in a process of its own, and as many run at once as there are cores (both
phases of a repeat are single-threaded and CPU-bound, and the overhead is a ratio measured
inside one process), so three full repeats fit in the suite's ten minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.rows.common import Line, RowContext, RowResult, Target

NAME = "sim"


def _spec_args(quick: bool) -> tuple[int, float]:
    """(conversations, seconds) of the workload: the reference one, or a small one."""
    return (500, 600.0) if quick else (10_000, 3600.0)


@contextlib.contextmanager
def _stopping(procs: list[subprocess.Popen[str]]) -> Iterator[None]:
    """Stop the repeats still running if the row is interrupted (Ctrl-C, an error).

    SIGINT first, so each repeat's clean-up runs (the simulator's scratch directory), then
    SIGKILL for one that does not exit within a few seconds.
    """
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start(conversations: int, seconds: float) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "benchmarks.rows.sim", str(conversations), str(seconds)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"sim repeat exited with code {proc.returncode}")
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def run(ctx: RowContext) -> RowResult:
    conversations, seconds = _spec_args(ctx.quick)
    # The simulator run is most of a quick suite's time, and a quick run only has to show
    # that every row produces numbers: one repeat there, the median of `repeats` otherwise.
    repeats = 1 if ctx.quick else ctx.repeats
    parallel = max(1, min(repeats, os.cpu_count() or 1))
    label = f"{conversations // 1000}k conv" if conversations >= 1000 else f"{conversations} conv"
    line = Line(NAME, label, "s", "lower")
    line.target = Target("≤2x lim", max_vs_limit=2.0)
    capacity = Line(NAME, f"{label.removesuffix(' conv')} capacity", "s", "lower")
    capacity.target = Target("≤0.05x lim", max_vs_limit=0.05)
    line.extra = {"speed": [], "calls": [], "simulated_seconds": []}
    results: list[dict[str, Any]] = []
    running: list[subprocess.Popen[str]] = []
    started = 0
    with _stopping(running):
        while len(results) < repeats:
            while started < repeats and len(running) < parallel:
                started += 1
                ctx.progress(f"{NAME}: repeat {started}/{repeats} started ({parallel} at once)")
                running.append(_start(conversations, seconds))
            finished = [proc for proc in running if proc.poll() is not None]
            for proc in finished:
                running.remove(proc)
                results.append(_result(proc))
            if not finished:
                time.sleep(0.2)
    for data in results:
        line.ours.append(float(data["sim_wall"]))
        line.limit.append(float(data["replay_wall"]))
        line.extra["speed"].append(float(data["speed"]))
        line.extra["calls"].append(float(data["calls"]))
        line.extra["simulated_seconds"].append(float(data["simulated_seconds"]))
        capacity.ours.append(float(data["capacity_wall"]))
        capacity.limit.append(float(data["sim_wall"]))
    speeds = sorted(line.extra["speed"])
    line.notes.append(
        f"{conversations:,} conversations, 8 pods; simulated/wall speed "
        f"{speeds[len(speeds) // 2]:.1f}x (median); {int(line.extra['calls'][0]):,} store calls"
    )
    if parallel > 1:
        line.notes.append(f"{parallel} repeats ran at once, each in its own process")
    if repeats < ctx.repeats:
        line.notes.append("one repeat only in --quick (the full run takes the median)")
    capacity.notes.append(
        "capacity mode (sim/capacity.py) on the same spec; limit = the full simulator's wall "
        "time, so ≤0.05x is at least 20x faster"
    )
    return RowResult(NAME, [line, capacity])


def worker(conversations: int, seconds: float) -> None:
    """One repeat: measure and print the result as one JSON line."""
    from benchmarks.sim_overhead import measure, reference_spec
    from sim.capacity import run_capacity

    spec = reference_spec(conversations=conversations, seconds=seconds)
    result = measure(spec)
    data = dataclasses.asdict(result)
    data.update(speed=result.speed, overhead=result.overhead)
    started = time.perf_counter()
    run_capacity(spec)
    data["capacity_wall"] = time.perf_counter() - started
    print(json.dumps(data), flush=True)


if __name__ == "__main__":
    try:
        worker(int(sys.argv[1]), float(sys.argv[2]))
    except KeyboardInterrupt:  # the row stops its repeats this way; clean-up has run
        sys.exit(130)
