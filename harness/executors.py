"""Where the gate's seeds and the sweep's points run: local processes, or a Dask cluster.

A seed's run is a pure function of its spec (docs/architecture.md, section 6), so it can run
on any machine and give the same history hash. The gate and the sweep therefore only need an
executor that takes a picklable function and its argument: `concurrent.futures`' own process
pool by default, or `dask.distributed` when a user has more seeds or points than one machine
runs in time. Dask is an existing engine for exactly this (scheduling, worker loss, a
dashboard); its `Client.get_executor()` speaks the `concurrent.futures` interface, so the
gate's loop is the same whichever runs it.

Workers import a user's store by module path, as the pods do: every worker gets the project
directory on its `sys.path` (local processes through the pool's initializer, Dask workers
through `Client.run`). A remote cluster's workers must have the project and its store
installed, like any Dask job's code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOCAL_CLUSTER = "local"
"""`--scheduler local`: a Dask `LocalCluster` on this machine (what the tests use)."""


CONNECT_SECONDS = 10
"""How long to wait for a Dask scheduler before saying it cannot be reached."""


class SchedulerError(Exception):
    """A `--scheduler` that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Workers:
    """An executor, how many tasks it runs at once, and a name for the progress line."""

    executor: Executor
    slots: int
    where: str


@contextmanager
def open_workers(scheduler: str | None, jobs: int) -> Iterator[Workers]:
    """Local processes (`scheduler` None), a Dask `LocalCluster` (`local`), or the Dask
    scheduler at `scheduler` (an address such as `tcp://10.0.0.5:8786`)."""
    cwd = os.getcwd()
    if scheduler is None:
        with ProcessPoolExecutor(max_workers=jobs, initializer=add_path, initargs=(cwd,)) as pool:
            yield Workers(pool, jobs, f"{jobs} local processes")
        return
    from distributed import Client, LocalCluster

    cluster: Any = None
    if scheduler == LOCAL_CLUSTER:
        cluster = LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
        )
        address = cluster.scheduler_address
    else:
        address = scheduler
    try:
        client: Any = Client(address, timeout=f"{CONNECT_SECONDS}s")
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise SchedulerError(f"--scheduler {address}: cannot reach it ({exc})") from None
    try:
        client.run(add_path, cwd)
        slots = sum(client.nthreads().values())
        if slots < 1:
            raise SchedulerError(f"--scheduler {address}: the cluster has no workers")
        with client.get_executor(pure=False) as executor:
            yield Workers(executor, slots, f"Dask at {address}, {slots} slots")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def add_path(cwd: str) -> None:
    """Let a worker import the project's modules (a user's store) as the CLI does."""
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
