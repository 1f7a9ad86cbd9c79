"""One redis-server: the topology most tests and load runs use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servers.nodes import (
    HOST,
    Persistence,
    TlsFiles,
    free_port,
)
from servers.topology import Topology


class StandaloneTopology(Topology):
    """One redis-server: the simplest target, and the one for persistence experiments."""

    kind = "standalone"

    def __init__(
        self,
        run_dir: Path,
        *,
        persistence: Persistence = "none",
        password: str | None = None,
        port: int | None = None,
        tls: TlsFiles | None = None,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            run_dir, persistence=persistence, password=password, tls=tls, extra_config=extra_config
        )
        self._fixed_ports = port is not None
        self.nodes = [self._new_node("redis-0", "standalone", port or free_port())]

    def _params(self) -> dict[str, Any]:
        return {"port": self.nodes[0].port if self._fixed_ports else None}

    def _bootstrap(self) -> None:
        self._launch_fresh(self.nodes[0])

    def _store_endpoints(self) -> dict[str, Any]:
        return {"type": "redis", "host": HOST, "port": self.nodes[0].port, "db": 0}
