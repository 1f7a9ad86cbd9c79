"""Row `claim`: 10,000 due timers claimed and fired, by 1 pod and by 4 pods racing.

Each pod is a process (`benchmarks/claim_worker.py`), started once for the row and given one
job per run; all pods of a run get the start signal together, and the run lasts from that
signal until the last pod finishes. Every pod reports the senders it fired, so the row counts
duplicates and misses: the union must be exactly the due timers, each fired once.

- ours: `TimerService.poll_once` in a loop (at-least-once: leased batches of 500);
- baseline: `RasaTimerManager.poll_once` in a loop: every pod lists every due timer (1 + E
  round trips) and then races one conditional delete per timer;
- limit: one process claiming batches of 500 with a minimal Lua script (ZRANGEBYSCORE LIMIT,
  HMGET, ZREM, HDEL; no lease, no versions), on the baseline's layout. The same figure stands
  on both lines: it is what one process can do at best.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

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
    rasa_commands,
)

NAME = "claim"
PODS = (1, 4)
BATCH = 500
RUNS = (("ours", 1), ("ours", 4), ("baseline", 1), ("baseline", 4), ("limit", 1))


class WorkerError(RuntimeError):
    """A claim worker died or answered something unexpected."""


class Workers:
    """Claim worker processes, reused across runs; killed on exit whatever happens."""

    def __init__(self, count: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for _ in range(count):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.claim_worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
            )

    def run(self, jobs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
        """Run one job per worker, started together; (their reports, wall seconds)."""
        procs = self.procs[: len(jobs)]
        for proc, job in zip(procs, jobs, strict=True):
            _write(proc, json.dumps(job))
        for proc in procs:
            if not _read(proc).get("ready"):
                raise WorkerError("a claim worker did not get ready")
        go = time.time()
        for proc in procs:
            _write(proc, "go")
        reports = [_read(proc) for proc in procs]
        return reports, max(float(report["ended"]) for report in reports) - go

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _write(proc: subprocess.Popen[str], line: str) -> None:
    stdin: IO[str] | None = proc.stdin
    if stdin is None:
        raise WorkerError("claim worker has no stdin")
    stdin.write(line + "\n")
    stdin.flush()


def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout: IO[str] | None = proc.stdout
    line = stdout.readline() if stdout is not None else ""
    if not line:
        raise WorkerError(f"claim worker {proc.pid} exited (code {proc.poll()})")
    data: dict[str, Any] = json.loads(line)
    return data


@contextlib.contextmanager
def workers(count: int) -> Iterator[Workers]:
    pool = Workers(count)
    try:
        yield pool
    finally:
        pool.close()


def tally(reports: Sequence[dict[str, Any]], expected: set[str]) -> tuple[int, int]:
    """(duplicates, missing) over every pod's fired senders; a sender fired by no one is
    missing, one fired n times counts n - 1 duplicates, and a stranger counts as a duplicate."""
    fired = collections.Counter(sender for report in reports for sender in report["fired"])
    duplicates = sum(count - 1 for count in fired.values())
    duplicates += sum(1 for sender in fired if sender not in expected)
    return duplicates, len(expected - set(fired))


def _label(pods: int) -> str:
    return "1 pod" if pods == 1 else f"{pods} pods"


def _fill(server: Server, way: str, prefix: str, timers: Sequence[TimerSpec], seed: int) -> None:
    if way == "ours":
        bulk_load(server, ours_commands(ours_keys(prefix), timers, seed=seed))
    else:
        bulk_load(server, rasa_commands(prefix, timers))


def run(ctx: RowContext) -> RowResult:
    count = 2_000 if ctx.quick else 10_000
    lines = {pods: Line(NAME, _label(pods), "claims/s", "higher") for pods in PODS}
    lines[4].target = Target("≥5x base, 0 dup", min_vs_base=5.0, exact=True)
    for line in lines.values():
        line.counts = {"ours duplicates": [], "ours missing": []}
        line.extra = {"baseline duplicates": [], "baseline missing": []}
    limit_counts: dict[str, list[float]] = {"limit duplicates": [], "limit missing": []}
    with fresh_redis(ctx, NAME) as topology, workers(max(PODS)) as pool:
        server = Server.of(topology)
        admin = server.sync_client()
        for repeat in range(ctx.repeats):
            ctx.progress(f"{NAME}: repeat {repeat + 1}/{ctx.repeats}")
            order = ctx.repeat_order(RUNS, repeat)
            for way, pods in order:
                prefix = f"c{repeat}{way[0]}{pods}"
                # Due an hour ago, a hundredth of a second apart: all due at the start signal.
                timers = make_timers(count, time.time() - 3600.0, 0.01, seed=repeat * 10 + pods)
                _fill(server, way, prefix, timers, seed=repeat)
                job = {"mode": way, "host": server.host, "port": server.port}
                job.update(prefix=prefix, batch=BATCH)
                reports, wall = pool.run([job] * pods)
                duplicates, missing = tally(reports, {timer.sender for timer in timers})
                rate = count / wall
                if way == "limit":
                    for line in lines.values():
                        line.limit.append(rate)
                    limit_counts["limit duplicates"].append(duplicates)
                    limit_counts["limit missing"].append(missing)
                    continue
                line = lines[pods]
                getattr(line, way).append(rate)
                if way == "ours":
                    line.counts["ours duplicates"].append(duplicates)
                    line.counts["ours missing"].append(missing)
                else:
                    line.extra["baseline duplicates"].append(duplicates)
                    line.extra["baseline missing"].append(missing)
            admin.flushdb()
        admin.close()
    for line in lines.values():
        line.extra.update(limit_counts)
        dup = {name: sum(values) for name, values in line.counts.items()}
        other = {name: int(sum(values)) for name, values in line.extra.items()}
        line.notes.append(
            f"{count:,} due timers; over all repeats: ours {dup['ours duplicates']} duplicates, "
            f"{dup['ours missing']} missing; baseline {other['baseline duplicates']} duplicates, "
            f"{other['baseline missing']} missing; limit (1 process) "
            f"{other['limit duplicates']} duplicates, {other['limit missing']} missing"
        )
    return RowResult(NAME, list(lines.values()))
