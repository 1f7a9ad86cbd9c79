"""The kinds of topology by name, as the CLI, the load harness and the tests choose them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servers.cluster import ClusterTopology
from servers.nodes import Persistence, TopologyError
from servers.sentinel import SentinelTopology
from servers.standalone import StandaloneTopology
from servers.topology import Topology

TOPOLOGIES: dict[str, type[Topology]] = {
    "standalone": StandaloneTopology,
    "cluster": ClusterTopology,
    "sentinel": SentinelTopology,
}
"""Every kind, with its defaults: a cluster of 3 masters with a replica each, a master with one
replica and 3 sentinels."""


def build_topology(
    kind: str, run_dir: Path, *, persistence: Persistence = "none", **kwargs: Any
) -> Topology:
    """A topology of `kind` under `run_dir`, not started."""
    if kind not in TOPOLOGIES:
        raise TopologyError(f"unknown topology kind {kind!r}; use one of {sorted(TOPOLOGIES)}")
    return TOPOLOGIES[kind](run_dir, persistence=persistence, **kwargs)


def start_topology(
    kind: str, run_dir: Path, *, persistence: Persistence = "none", **kwargs: Any
) -> Topology:
    """Build and start a topology by kind name."""
    return build_topology(kind, run_dir, persistence=persistence, **kwargs).start()
