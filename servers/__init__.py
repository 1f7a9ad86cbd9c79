"""Real Redis servers on loopback (standalone, cluster, sentinel) and their TLS material, for
the load harness, the benchmarks and the tests.

    from servers import StandaloneTopology, start_topology, TOPOLOGIES
"""

from servers.cluster import ClusterTopology
from servers.kinds import TOPOLOGIES, build_topology, start_topology
from servers.nodes import (
    HOST,
    INSTALL_HINT,
    PERSISTENCE_MODES,
    STATE_FILE,
    Persistence,
    RedisNode,
    TlsFiles,
    TopologyError,
    free_port,
)
from servers.sentinel import SentinelTopology
from servers.standalone import StandaloneTopology
from servers.topology import Topology

__all__ = [
    "HOST",
    "INSTALL_HINT",
    "PERSISTENCE_MODES",
    "STATE_FILE",
    "TOPOLOGIES",
    "ClusterTopology",
    "Persistence",
    "RedisNode",
    "SentinelTopology",
    "StandaloneTopology",
    "TlsFiles",
    "Topology",
    "TopologyError",
    "build_topology",
    "free_port",
    "start_topology",
]
