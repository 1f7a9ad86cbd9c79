"""One redis process: its files, its port, its command line; and the waits around it."""

from __future__ import annotations

import collections
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import redis

Persistence = Literal["none", "rdb", "aof_everysec", "aof_always"]
PERSISTENCE_MODES: tuple[str, ...] = get_args(Persistence)

STATE_FILE = "topology.json"
HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # redis derives the cluster bus port as port + 10000
INSTALL_HINT = "apt-get install redis-server redis-sentinel redis-tools"

# What each persistence mode means in redis.conf; `save ""` turns RDB snapshots off.
PERSISTENCE_CONF: dict[str, list[str]] = {
    "none": ['save ""', "appendonly no"],
    "rdb": ["save 1 1", "appendonly no"],
    "aof_everysec": ['save ""', "appendonly yes", "appendfsync everysec"],
    "aof_always": ['save ""', "appendonly yes", "appendfsync always"],
}

READY_TIMEOUT = 10.0  # a node must answer PING this soon after exec (AOF replay included)
STOP_GRACE = 5.0  # SIGTERM lets redis flush its persistence; after this it gets SIGKILL
PORT_ATTEMPTS = 5  # how often a fresh node may move to another port after a bind race
POLL = 0.05

# Seeded per process so that parallel test workers pick different ports most of the time.
_RNG = random.Random(os.getpid() * 1_000_003 + time.time_ns())
# Ports handed out recently but perhaps not bound yet: a second call must not return them.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=256)


class TopologyError(RuntimeError):
    """A topology could not be started, reached or stopped; the message says what to do."""


class PortInUse(TopologyError):
    """The node lost its port to another process between choosing and binding it."""


@dataclass(frozen=True)
class TlsFiles:
    """Server certificate files; with TLS each node listens only on its TLS port."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass
class RedisNode:
    """One redis-server or sentinel process; ``role`` is the role it was started with."""

    name: str
    role: str
    port: int
    conf_path: Path
    data_dir: Path
    pid: int | None = None

    def address(self) -> str:
        """The ``host:port`` form that redis clients and redis-cli take."""
        return f"{HOST}:{self.port}"


def free_port(*, low: int = 16000, high: int = 21999, also_free: Sequence[int] = ()) -> int:
    """Pick a random port in [low, high] that can be bound on 127.0.0.1 right now.

    ``also_free`` holds offsets from that port which must be free as well, e.g.
    ``(CLUSTER_BUS_OFFSET,)`` for a cluster node, whose bus port is port + 10000. Random rather
    than sequential choice keeps parallel test processes apart; a port can still be raced
    away before redis binds it, which ``Topology.start`` handles by choosing again.
    """
    for _ in range(500):
        port = _RNG.randint(low, high)
        if port in _RECENT_PORTS:
            continue
        if all(can_bind(port + offset) for offset in (0, *also_free)):
            _RECENT_PORTS.append(port)
            return port
    raise TopologyError(f"no free port found in {low}-{high} on {HOST}; stop stray redis processes")


def can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TopologyError(f"{name} not found: {INSTALL_HINT}")
    return path


def node_command(node: RedisNode) -> list[str]:
    """The argv for a node; sentinel falls back to ``redis-server --sentinel``."""
    if node.role != "sentinel":
        return [binary("redis-server"), str(node.conf_path)]
    sentinel = shutil.which("redis-sentinel")
    if sentinel is not None:
        return [sentinel, str(node.conf_path)]
    return [binary("redis-server"), str(node.conf_path), "--sentinel"]


def quote_conf(value: object) -> str:
    """Quote a redis.conf value so spaces, quotes or '#' in passwords and paths survive."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def is_redis_pid(pid: int) -> bool:
    """True if ``pid`` is a live redis process, so a reused PID is never signalled."""
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; errors from ``check`` count as 'not yet'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TopologyError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)
