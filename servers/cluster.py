"""A redis cluster: three masters or more, each with replicas."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from servers.nodes import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_SLOTS,
    Persistence,
    RedisNode,
    TlsFiles,
    TopologyError,
    binary,
    free_port,
    wait_for,
)
from servers.topology import Topology


class ClusterTopology(Topology):
    """A redis cluster built with ``redis-cli --cluster create``.

    ``cluster-node-timeout 1000`` and ``cluster-replica-validity-factor 0`` make failover fast
    and always possible, which is what failure tests want from it.
    """

    kind = "cluster"

    def __init__(
        self,
        run_dir: Path,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        persistence: Persistence = "none",
        password: str | None = None,
        tls: TlsFiles | None = None,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        if masters < 3 or replicas_per_master < 0:
            raise TopologyError("a redis cluster needs masters >= 3 and replicas_per_master >= 0")
        super().__init__(
            run_dir, persistence=persistence, password=password, tls=tls, extra_config=extra_config
        )
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        for index in range(masters * (1 + replicas_per_master)):
            port = self._port_for_new_node()
            self.nodes.append(
                self._new_node(f"cluster-{port}", "master" if index < masters else "replica", port)
            )

    def masters(self) -> list[RedisNode]:
        """The masters serving slots right now, as the cluster itself reports them."""
        for node in self._live_nodes():
            try:
                with self.client(node) as conn:
                    text = str(conn.execute_command("CLUSTER", "NODES"))
            except (redis.RedisError, OSError):
                continue
            return [self._node_by_port(port) for port in sorted(cluster_masters(text))]
        raise TopologyError(f"no cluster node under {self.run_dir} answers CLUSTER NODES")

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok with all 16384 slots served, all live
        nodes agree on who the masters are, and every live replica has its master link up.

        The agreement matters right after a restart: a returning old master still believes in
        its stale slot map (and says ok) until the others tell it about the failover.
        """
        wait_for(self._healthy, timeout, f"cluster under {self.run_dir} to become healthy")

    def _healthy(self) -> bool:
        live = self._live_nodes()
        views: set[frozenset[int]] = set()
        for node in live:
            with self.client(node, socket_timeout=1.0) as conn:
                info = parse_info(str(conn.execute_command("CLUSTER", "INFO")))
                views.add(frozenset(cluster_masters(str(conn.execute_command("CLUSTER", "NODES")))))
                replication = conn.info("replication")
            if info.get("cluster_state") != "ok":
                return False
            if info.get("cluster_slots_ok") != str(CLUSTER_SLOTS):
                return False
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return len(views) == 1

    def _params(self) -> dict[str, Any]:
        return {"masters": self.masters_count, "replicas_per_master": self.replicas_per_master}

    def _port_for_new_node(self) -> int:
        return free_port(high=21999, also_free=(CLUSTER_BUS_OFFSET,))

    def _place(self, node: RedisNode, port: int) -> None:
        fresh = self._new_node(f"cluster-{port}", node.role, port)
        node.name, node.port, node.conf_path, node.data_dir = (
            fresh.name,
            fresh.port,
            fresh.conf_path,
            fresh.data_dir,
        )

    def _node_conf(self, node: RedisNode) -> list[str]:
        lines = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-node-timeout 1000",
            "cluster-replica-validity-factor 0",
        ]
        if self.tls is not None:
            lines.append("tls-cluster yes")
        return lines

    def _bootstrap(self) -> None:
        for node in self.nodes:
            self._launch_fresh(node)
        self._create_cluster()
        self.wait_healthy()
        current = {node.port for node in self.masters()}
        for node in self.nodes:
            node.role = "master" if node.port in current else "replica"

    def _create_cluster(self) -> None:
        """Run ``redis-cli --cluster create``; the password goes via REDISCLI_AUTH, not argv."""
        args = [
            binary("redis-cli"),
            *self._cli_tls_args(),
            "--cluster",
            "create",
            *(node.address() for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas_per_master),
            "--cluster-yes",
        ]
        env = dict(os.environ)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password
        try:
            result = subprocess.run(
                args, env=env, capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise TopologyError("redis-cli --cluster create hung for 60s; see node logs") from exc
        output = result.stdout + result.stderr
        if result.returncode != 0 or "[ERR]" in output:
            tail = " | ".join(line for line in output.splitlines()[-6:] if line.strip())
            raise TopologyError(f"redis-cli --cluster create failed: {self._redact(tail)}")

    def _store_endpoints(self) -> dict[str, Any]:
        return {
            "type": "redis",
            "deployment_mode": "cluster",
            "endpoints": [node.address() for node in self.masters()],
        }


def parse_info(text: str) -> dict[str, str]:
    """Parse ``key:value`` lines (CLUSTER INFO)."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def cluster_masters(nodes_text: str) -> set[int]:
    """Ports of the healthy slot-serving masters in a CLUSTER NODES reply.

    Line format: ``<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch>
    <link> <slot>...``; a master without slots or flagged fail/fail? is not serving.
    """
    ports: set[int] = set()
    for line in nodes_text.splitlines():
        fields = line.split()
        if len(fields) < 9:
            continue
        flags = fields[2].split(",")
        if "master" in flags and "fail" not in flags and "fail?" not in flags:
            ports.add(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
    return ports
