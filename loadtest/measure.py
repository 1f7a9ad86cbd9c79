"""What a load run measures besides its history, for calibrating the simulator: the Redis
commands its masters processed (by name) and the CPU its pods used (`run.json`, "measured")."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from servers import Topology

ADMIN_COMMANDS = frozenset({"cmdstat_info", "cmdstat_client", "cmdstat_hello"})
"""What counting itself sends (and what redis-py sends on connecting): not the pods' load."""


@dataclass(frozen=True)
class Commands:
    """Commands the deployment's masters had processed, by name, and which server processes
    counted them (a restart starts the counts again)."""

    by_name: dict[str, int]
    servers: tuple[str, ...]


def commands_processed(topology: Topology) -> Commands | None:
    """Commands the deployment's masters have processed so far (`INFO commandstats`, without
    the counting's own), or None when one of them cannot answer (a fault left it down): what
    a capacity calibration compares with the simulator's calls."""
    total: dict[str, int] = {}
    servers = []
    for node in topology.nodes:
        if node.role in {"sentinel", "replica"}:
            continue
        try:
            with topology.client(node, socket_timeout=2.0) as admin:
                stats = admin.info("commandstats")
                servers.append(str(admin.info("server")["run_id"]))
        except (redis.RedisError, OSError, KeyError):
            return None
        for name, value in stats.items():
            if name not in ADMIN_COMMANDS:
                command = name.removeprefix("cmdstat_")
                total[command] = total.get(command, 0) + int(value["calls"])
    return Commands(total, tuple(servers))


def pods_cpu(urls: Sequence[str]) -> dict[str, float]:
    """The CPU seconds the pod processes at `urls` used in all (their
    `process_cpu_seconds_total`), for a calibration's estimate of a pod's cost per message;
    nothing if a pod cannot say."""
    total = 0.0
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return {}
        found = [line for line in text.splitlines() if line.startswith("process_cpu_seconds_")]
        if not found:
            return {}
        total += float(found[0].split()[-1])
    return {"pod_cpu_seconds": total}


def measured_since(before: Commands | None, after: Commands | None, since: float) -> dict[str, Any]:
    """Redis commands processed during the run, in all and by name, and over how many
    seconds (run.json); nothing when a count failed or a server restarted in between (its
    counts began again, so the difference would miss what came before)."""
    seconds = time.time() - since
    if before is None or after is None or before.servers != after.servers or seconds <= 0:
        return {}
    by_name = {name: n - before.by_name.get(name, 0) for name, n in after.by_name.items()}
    by_name = {name: calls for name, calls in sorted(by_name.items()) if calls}
    return {"redis_commands": sum(by_name.values()), "by_command": by_name, "seconds": seconds}
