"""A master, its replicas and the sentinels that watch them."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from servers.nodes import (
    HOST,
    Persistence,
    RedisNode,
    TlsFiles,
    TopologyError,
    free_port,
    quote_conf,
    wait_for,
)
from servers.topology import Topology


class SentinelTopology(Topology):
    """One master, its replicas and a sentinel group that fails the master over."""

    kind = "sentinel"

    def __init__(
        self,
        run_dir: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        service: str = "mymaster",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        persistence: Persistence = "none",
        password: str | None = None,
        tls: TlsFiles | None = None,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        if replicas < 0 or sentinels < 1:
            raise TopologyError("a sentinel topology needs replicas >= 0 and sentinels >= 1")
        super().__init__(
            run_dir, persistence=persistence, password=password, tls=tls, extra_config=extra_config
        )
        self.replicas = replicas
        self.sentinels = sentinels
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.nodes = [self._new_node("redis-0", "master", free_port())]
        self.nodes += [
            self._new_node(f"redis-{i}", "replica", free_port()) for i in range(1, replicas + 1)
        ]
        self.nodes += [
            self._new_node(f"sentinel-{i}", "sentinel", free_port()) for i in range(sentinels)
        ]

    def current_master(self) -> RedisNode:
        """The master most live sentinels report now (they can briefly disagree mid-failover)."""
        votes = collections.Counter(self._reported_master_ports())
        if not votes:
            raise TopologyError(
                f"no sentinel under {self.run_dir} reports a master for {self.service}"
            )
        return self._node_by_port(votes.most_common(1)[0][0])

    def wait_failover(self, old_master: RedisNode, timeout: float = 30) -> RedisNode:
        """Until every answering sentinel reports one other master, and it says ROLE master."""
        promoted: list[RedisNode] = []

        def failed_over() -> bool:
            ports = set(self._reported_master_ports())
            if len(ports) != 1 or old_master.port in ports:
                return False
            node = self._node_by_port(ports.pop())
            with self.client(node, socket_timeout=1.0) as conn:
                role = conn.execute_command("ROLE")
            if role[0] != "master":
                return False
            promoted.append(node)
            return True

        wait_for(failed_over, timeout, f"sentinels to fail over from {old_master.name}")
        return promoted[-1]

    def _reported_master_ports(self) -> list[int]:
        ports = []
        for node in self._live_nodes(self._sentinel_nodes()):
            try:
                with self.client(node, socket_timeout=1.0) as conn:
                    addr = conn.sentinel_get_master_addr_by_name(self.service)
            except (redis.RedisError, OSError):
                continue
            if addr:
                ports.append(int(addr[1]))
        return ports

    def _sentinel_nodes(self) -> list[RedisNode]:
        return [node for node in self.nodes if node.role == "sentinel"]

    def _params(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "sentinels": self.sentinels,
            "service": self.service,
            "down_after_ms": self.down_after_ms,
            "failover_timeout_ms": self.failover_timeout_ms,
        }

    def _node_conf(self, node: RedisNode) -> list[str]:
        master = self.nodes[0]
        if node.role == "replica":
            return [f"replicaof {HOST} {master.port}"]
        if node.role != "sentinel":
            return []
        quorum = self.sentinels // 2 + 1
        lines = [
            f"sentinel monitor {self.service} {HOST} {master.port} {quorum}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {self.service} {quote_conf(self.password)}")
        return lines

    def _bootstrap(self) -> None:
        """Master first, then replicas (pointed at its final port), then sentinels."""
        data, sentinels = self._data_nodes(), self._sentinel_nodes()
        for node in data:
            self._launch_fresh(node)
        wait_for(self._replicas_synced, 15, f"replicas of {data[0].name} to sync")
        for node in sentinels:
            self._launch_fresh(node)
        wait_for(self._sentinels_settled, 30, "sentinels to see the replicas and each other")

    def _replicas_synced(self) -> bool:
        for node in self._data_nodes()[1:]:
            with self.client(node, socket_timeout=1.0) as conn:
                if conn.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _sentinels_settled(self) -> bool:
        replica_ports = {node.port for node in self._data_nodes()[1:]}
        for node in self._sentinel_nodes():
            with self.client(node, socket_timeout=1.0) as conn:
                master = conn.sentinel_master(self.service)
                known = conn.sentinel_slaves(self.service)
            if master["num-other-sentinels"] != self.sentinels - 1:
                return False
            healthy = {r["port"] for r in known if not (r["is_sdown"] or r["is_disconnected"])}
            if not replica_ports <= healthy:
                return False
        return True

    def _store_endpoints(self) -> dict[str, Any]:
        return {
            "type": "redis",
            "deployment_mode": "sentinel",
            "endpoints": [node.address() for node in self._sentinel_nodes()],
            "sentinel_service": self.service,
            "db": 0,
        }
