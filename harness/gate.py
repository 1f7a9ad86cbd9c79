"""`timerlab gate`: many seeded simulator runs in parallel, and one verdict.

A user points it at their own store (`--store pkg.module.Class`) in CI. Seeds run on all cores,
or on a Dask cluster (`--scheduler`), with a progress bar; the first failing seed stops the
gate (unless `--keep-going`), and the failure is printed with the rule it broke and the exact
command that replays it. A seed on which timerlab itself failed is a harness error, kept
apart from the verdicts. A CI matrix runs one slice per job (`--shard K/N`) and combines the
slices' JSON with `--merge` (`harness.shards`).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from harness.executors import open_workers
from harness.simrun import Outcome, run_seed
from sim.spec import RunSpec


@dataclass
class GateResult:
    """Every outcome the gate saw, the first failure, and the wall time."""

    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    """Seeds whose verdict is FAIL."""
    errors: list[Outcome] = field(default_factory=list)
    """Seeds on which timerlab itself failed."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.errors

    def exercised(self) -> Counter[str]:
        """How many runs exercised each fault kind."""
        kinds: Counter[str] = Counter()
        for outcome in self.outcomes:
            for fault, evidence in outcome.exercised.items():
                if not evidence.startswith("NOT"):
                    kinds[fault.split("@")[0]] += 1
        return kinds

    def totals(self) -> Counter[str]:
        """Timers armed and fired, over every seed."""
        totals: Counter[str] = Counter()
        for outcome in self.outcomes:
            totals.update(
                {k: int(v) for k, v in outcome.stats.items() if k in {"instances", "fires"}}
            )
        return totals

    def declared(self) -> Counter[str]:
        """Declared losses by class, over every seed."""
        declared: Counter[str] = Counter()
        for outcome in self.outcomes:
            declared.update({k: v for k, v in outcome.declared.items() if v})
        return declared

    def slowest(self, count: int = 3) -> list[Outcome]:
        return sorted(self.outcomes, key=lambda o: -o.seconds)[:count]

    def summary(self) -> str:
        """What the gate did, also when it passed: seeds, timers, faults, declared losses."""
        totals = self.totals()
        faults = ", ".join(f"{kind}×{count}" for kind, count in sorted(self.exercised().items()))
        losses = ", ".join(f"{k} {v}" for k, v in sorted(self.declared().items())) or "none"
        slow = ", ".join(f"{o.seed} ({o.seconds:.1f} s)" for o in self.slowest())
        passed = len(self.outcomes) - len(self.failures) - len(self.errors)
        return (
            f"{passed} of {len(self.outcomes)} seeds passed in {self.seconds:.0f} s; "
            f"{totals['instances']} timers armed, {totals['fires']} fired; "
            f"faults exercised: {faults or 'none'}; declared losses: {losses}; "
            f"slowest seeds: {slow or 'none'}"
        )


def run_gate(
    specs: Sequence[RunSpec],
    *,
    jobs: int,
    keep_going: bool,
    keep_dir: Path | None,
    scheduler: str | None = None,
    progress: bool = True,
) -> GateResult:
    """Run every spec (one per seed) on local processes or a Dask cluster (`scheduler`, see
    `harness.executors`); failing runs are kept under `keep_dir`."""
    started = time.monotonic()
    result = GateResult()
    scratch = Path(tempfile.mkdtemp(prefix="timerlab-gate-"))
    by_seed = {spec.seed: spec for spec in specs}
    work = iter([(spec, str(scratch / f"seed-{spec.seed}")) for spec in specs])
    bar = tqdm(total=len(specs), unit="seed", disable=not progress, file=sys.stderr)
    try:
        with open_workers(scheduler, jobs) as workers:
            if scheduler is not None:
                bar.write(f"gate: running on {workers.where}")
            pool = workers.executor
            running: set[Future[Outcome]] = set()
            _fill(pool, running, work, workers.slots)
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    result.outcomes.append(outcome)
                    bar.update(1)
                    if outcome.ok:
                        shutil.rmtree(outcome.out_dir, ignore_errors=True)
                    else:
                        kept = _keep(outcome, keep_dir, by_seed[outcome.seed])
                        (result.errors if kept.error else result.failures).append(kept)
                        bar.set_postfix(failed=len(result.failures), errors=len(result.errors))
                if (result.failures or result.errors) and not keep_going:
                    for future in running:
                        future.cancel()
                    break
                _fill(pool, running, work, workers.slots - len(running))
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    result.outcomes.sort(key=lambda o: o.seed)
    result.failures.sort(key=lambda o: o.seed)
    result.errors.sort(key=lambda o: o.seed)
    result.seconds = time.monotonic() - started
    return result


def _fill(
    pool: Executor,
    running: set[Future[Outcome]],
    work: Iterator[tuple[RunSpec, str]],
    count: int,
) -> None:
    for _ in range(max(0, count)):
        item = next(work, None)
        if item is None:
            return
        running.add(pool.submit(run_seed, item))


def _keep(outcome: Outcome, keep_dir: Path | None, spec: RunSpec) -> Outcome:
    """Move a failing run out of the scratch space so the user can look at it.

    A run that failed on another machine (a remote Dask worker) left its files there: it is
    run again here, which a pure function of its seed allows, and must hash the same."""
    if keep_dir is None:
        return outcome
    target = keep_dir / f"seed-{outcome.seed}"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(outcome.out_dir).exists():
        shutil.move(outcome.out_dir, target)
        return dataclasses.replace(outcome, out_dir=str(target))
    again = run_seed((spec, str(target)))
    if not outcome.error and again.history_hash != outcome.history_hash:
        return dataclasses.replace(
            again,
            error=f"seed {spec.seed} ran differently here (history {again.history_hash[:16]}) "
            f"than on its worker ({outcome.history_hash[:16]}): the run is not reproducible",
        )
    return dataclasses.replace(outcome, out_dir=str(target))
