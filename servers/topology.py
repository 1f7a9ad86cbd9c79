"""Real redis-server / redis-sentinel topologies on loopback, for tests, load tests and the CLI.

Why real processes: the timer stores must be proven against what only a real server does
(fsync policy on a crash, replica promotion, cluster slot moves, a stalled process), which an
in-memory fake cannot show. Everything binds 127.0.0.1, lives under one run directory (one
sub-directory per node) and is recorded with its PID in ``topology.json``, so a different
process (``timerlab topology down``) can stop what this one started.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, get_args

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

Persistence = Literal["none", "rdb", "aof_everysec", "aof_always"]
PERSISTENCE_MODES: tuple[str, ...] = get_args(Persistence)

STATE_FILE = "topology.json"
HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # redis derives the cluster bus port as port + 10000
INSTALL_HINT = "apt-get install redis-server redis-sentinel redis-tools"

# What each persistence mode means in redis.conf; `save ""` turns RDB snapshots off.
_PERSISTENCE_CONF: dict[str, list[str]] = {
    "none": ['save ""', "appendonly no"],
    "rdb": ["save 1 1", "appendonly no"],
    "aof_everysec": ['save ""', "appendonly yes", "appendfsync everysec"],
    "aof_always": ['save ""', "appendonly yes", "appendfsync always"],
}

_READY_TIMEOUT = 10.0  # a node must answer PING this soon after exec (AOF replay included)
_STOP_GRACE = 5.0  # SIGTERM lets redis flush its persistence; after this it gets SIGKILL
_PORT_ATTEMPTS = 5  # how often a fresh node may move to another port after a bind race
_POLL = 0.05

# Seeded per process so that parallel test workers pick different ports most of the time.
_RNG = random.Random(os.getpid() * 1_000_003 + time.time_ns())
# Ports handed out recently but perhaps not bound yet: a second call must not return them.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=256)


class TopologyError(RuntimeError):
    """A topology could not be started, reached or stopped; the message says what to do."""


class _PortInUse(TopologyError):
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
        if all(_can_bind(port + offset) for offset in (0, *also_free)):
            _RECENT_PORTS.append(port)
            return port
    raise TopologyError(f"no free port found in {low}-{high} on {HOST}; stop stray redis processes")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TopologyError(f"{name} not found: {INSTALL_HINT}")
    return path


def _command(node: RedisNode) -> list[str]:
    """The argv for a node; sentinel falls back to ``redis-server --sentinel``."""
    if node.role != "sentinel":
        return [_binary("redis-server"), str(node.conf_path)]
    sentinel = shutil.which("redis-sentinel")
    if sentinel is not None:
        return [sentinel, str(node.conf_path)]
    return [_binary("redis-server"), str(node.conf_path), "--sentinel"]


def _quote(value: object) -> str:
    """Quote a redis.conf value so spaces, quotes or '#' in passwords and paths survive."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _is_redis_pid(pid: int) -> bool:
    """True if ``pid`` is a live redis process, so a reused PID is never signalled."""
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
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
        time.sleep(_POLL)


class Topology:
    """A set of redis processes under ``run_dir``; subclasses decide the shape.

    Nodes and their ports are chosen in ``__init__`` (so callers can see them before start);
    configuration files are written when a node is first started, because a port lost to a
    race moves the node and everything that points at it is rendered afterwards.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        run_dir: Path,
        *,
        persistence: Persistence = "none",
        password: str | None = None,
        tls: TlsFiles | None = None,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        if persistence not in PERSISTENCE_MODES:
            raise TopologyError(
                f"unknown persistence {persistence!r}; use one of {PERSISTENCE_MODES}"
            )
        self.run_dir = Path(run_dir).resolve()
        self.persistence: Persistence = persistence
        self.password = password
        self.tls = tls
        self.extra_config = dict(extra_config or {})
        self.nodes: list[RedisNode] = []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._paused: set[str] = set()
        self._fixed_ports = False

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start every process, wait until the topology is fully usable, write the state file.

        On any failure the processes started so far are stopped before the error propagates,
        because a caller whose ``start()`` raised has no object to clean up.
        """
        if self._running():
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _LIVE.add(self)
        try:
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def stop(self) -> None:
        """SIGTERM every node, SIGKILL what is still alive after a short grace; idempotent."""
        _LIVE.discard(self)
        # Sentinels are signalled first so they do not start a failover as the masters go.
        self._terminate(sorted(self.nodes, key=lambda node: node.role != "sentinel"))
        self._paused.clear()
        if self.run_dir.is_dir():
            self._write_state()

    def detach(self) -> None:
        """Let the processes outlive this Python process (``timerlab topology up``).

        Without this the atexit safety net stops every topology its owner forgot.
        """
        _LIVE.discard(self)

    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node and wait until it is gone: a crash, with no chance to persist."""
        self._signal(node, signal.SIGKILL)
        if not self._wait_exit(node, _STOP_GRACE):
            raise TopologyError(f"{node.name} (pid {node.pid}) survived SIGKILL; check with ps")
        self._forget_process(node)
        self._write_state()

    def restart(self, node: RedisNode, wait: bool = True) -> None:
        """Start a node again with the same conf, port and data dir.

        What its persistence mode kept comes back; a node that is still running is stopped
        gracefully first. The conf file is reused as is, because redis (CONFIG REWRITE) and
        sentinel may have rewritten it since, e.g. to turn an old master into a replica.
        """
        self._terminate([node])
        self._spawn(node)
        if wait:
            try:
                self._wait_ready(node)
            except _PortInUse as exc:
                raise TopologyError(
                    f"{node.name}: port {node.port} was taken while the node was down; "
                    "stop the process holding it and restart again"
                ) from exc
        _LIVE.add(self)

    def pause(self, node: RedisNode) -> None:
        """SIGSTOP: the node keeps its sockets but answers nothing, like a long GC or VM stall."""
        self._signal(node, signal.SIGSTOP)
        self._paused.add(node.name)

    def resume(self, node: RedisNode) -> None:
        """SIGCONT a paused node."""
        self._signal(node, signal.SIGCONT)
        self._paused.discard(node.name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- clients and config

    def client(self, node: RedisNode, *, socket_timeout: float = 5.0) -> redis.Redis:
        """A sync admin client for one node, with password and TLS as the node needs.

        Retries are off: redis-py retries ten times by default, which would turn a paused or
        killed node into a long hang instead of a quick error.
        """
        kwargs: dict[str, Any] = {
            "host": HOST,
            "port": node.port,
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.password is not None and node.role != "sentinel":
            kwargs["password"] = self.password
        if self.tls is not None:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
                ssl_certfile=str(self.tls.cert),
                ssl_keyfile=str(self.tls.key),
            )
        return redis.Redis(**kwargs)

    def timer_store_config(self) -> dict[str, Any]:
        """The ``timer_store:`` mapping of endpoints.yml that points a store at this topology."""
        config = self._store_endpoints()
        if self.password is not None:
            config["password"] = self.password
        if self.tls is not None:
            config.update(
                use_ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
                ssl_certfile=str(self.tls.cert),
                ssl_keyfile=str(self.tls.key),
            )
        return config

    # ----------------------------------------------------------------- state file

    @classmethod
    def load(cls, run_dir: Path, *, password: str | None = None) -> Topology:
        """Rebuild a topology from ``run_dir/topology.json``, e.g. to stop it from another process.

        The state file never holds the password; pass it here if the loaded object must talk
        to the nodes (stopping needs only the PIDs).
        """
        path = Path(run_dir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise TopologyError(
                f"cannot read {path}: {exc}; was the topology started there?"
            ) from exc
        kinds: dict[str, type[Topology]] = {
            sub.kind: sub for sub in (StandaloneTopology, ClusterTopology, SentinelTopology)
        }
        if state.get("kind") not in kinds:
            raise TopologyError(f"{path}: unknown topology kind {state.get('kind')!r}")
        params = dict(state["params"])
        password_set = params.pop("password_set")
        tls = params.pop("tls")
        topology = kinds[state["kind"]](
            run_dir,
            password=password if password_set else None,
            tls=TlsFiles(**{k: Path(v) for k, v in tls.items()}) if tls else None,
            **params,
        )
        topology.nodes = [
            RedisNode(
                name=item["name"],
                role=item["role"],
                port=item["port"],
                conf_path=Path(item["conf_path"]),
                data_dir=Path(item["data_dir"]),
                pid=item["pid"],
            )
            for item in state["nodes"]
        ]
        return topology

    def _write_state(self) -> None:
        """Record kind, parameters and PIDs; atomically, as another process may be reading."""
        tls = self.tls
        state = {
            "kind": self.kind,
            "params": {
                **self._params(),
                "persistence": self.persistence,
                "password_set": self.password is not None,
                "tls": None
                if tls is None
                else {"ca_cert": str(tls.ca_cert), "cert": str(tls.cert), "key": str(tls.key)},
                "extra_config": {k: str(v) for k, v in self.extra_config.items()},
            },
            "nodes": [
                {
                    "name": node.name,
                    "role": node.role,
                    "port": node.port,
                    "conf_path": str(node.conf_path),
                    "data_dir": str(node.data_dir),
                    "pid": node.pid,
                }
                for node in self.nodes
            ],
        }
        tmp = self.run_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.run_dir / STATE_FILE)

    # ----------------------------------------------------------------- subclass hooks

    def _bootstrap(self) -> None:
        """Start the processes and wait until the topology is usable."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        """Constructor parameters specific to the subclass, for the state file."""
        raise NotImplementedError

    def _store_endpoints(self) -> dict[str, Any]:
        """The password- and TLS-free part of ``timer_store_config``."""
        raise NotImplementedError

    def _node_conf(self, node: RedisNode) -> list[str]:
        """Directives beyond the common ones for this node."""
        return []

    def _port_for_new_node(self) -> int:
        return free_port()

    def _place(self, node: RedisNode, port: int) -> None:
        """Give a not-yet-started node its port (and with it, for some kinds, its name)."""
        node.port = port

    # ----------------------------------------------------------------- node helpers

    def _new_node(self, name: str, role: str, port: int) -> RedisNode:
        data_dir = self.run_dir / name
        conf_name = "sentinel.conf" if role == "sentinel" else "redis.conf"
        return RedisNode(name, role, port, data_dir / conf_name, data_dir)

    def _data_nodes(self) -> list[RedisNode]:
        return [node for node in self.nodes if node.role != "sentinel"]

    def _live_nodes(self, nodes: Sequence[RedisNode] | None = None) -> list[RedisNode]:
        """Nodes that run and are not paused, i.e. the ones that can answer."""
        candidates = self.nodes if nodes is None else nodes
        return [n for n in candidates if self._alive(n) and n.name not in self._paused]

    def _node_by_port(self, port: int) -> RedisNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"port {port} belongs to no node of this topology under {self.run_dir}")

    def _render(self, node: RedisNode) -> str:
        """The full conf file of a node: common directives, then role-specific ones."""
        listen = ["port 0", f"tls-port {node.port}"] if self.tls else [f"port {node.port}"]
        lines = [
            *listen,
            f"bind {HOST}",
            "daemonize no",
            f"dir {_quote(node.data_dir)}",
            f"logfile {_quote(node.data_dir / 'redis.log')}",
        ]
        if self.tls is not None:
            lines += [
                f"tls-cert-file {_quote(self.tls.cert)}",
                f"tls-key-file {_quote(self.tls.key)}",
                f"tls-ca-cert-file {_quote(self.tls.ca_cert)}",
                "tls-auth-clients optional",
                "tls-replication yes",
            ]
        if node.role != "sentinel":
            lines += _PERSISTENCE_CONF[self.persistence]
            # Redis 7 waits 5 s by default before a diskless full sync; tests cannot afford it.
            lines.append("repl-diskless-sync-delay 0")
            if self.password is not None:
                lines += [
                    f"requirepass {_quote(self.password)}",
                    f"masterauth {_quote(self.password)}",
                ]
        lines += self._node_conf(node)
        if node.role != "sentinel":
            lines += [f"{key} {value}" for key, value in self.extra_config.items()]
        return "\n".join(lines) + "\n"

    def _launch_fresh(self, node: RedisNode) -> None:
        """First start of a node: clean dir, new conf; move to another port if it was raced away."""
        for attempt in range(_PORT_ATTEMPTS):
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node.data_dir.mkdir(parents=True)
            node.conf_path.write_text(self._render(node))
            self._spawn(node)
            try:
                self._wait_ready(node)
                return
            except _PortInUse as exc:
                self._forget_process(node)
                if self._fixed_ports or attempt == _PORT_ATTEMPTS - 1:
                    raise TopologyError(
                        f"{node.name}: port {node.port} (or its cluster bus port) is in use; "
                        "free it or let the topology pick a port"
                    ) from exc
                shutil.rmtree(node.data_dir, ignore_errors=True)
                self._place(node, self._port_for_new_node())

    def _spawn(self, node: RedisNode) -> None:
        """Exec the node in its own session, so a Ctrl-C meant for Python does not reach it."""
        with (node.data_dir / "stdout.log").open("ab") as out:
            proc = subprocess.Popen(
                _command(node),
                cwd=node.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[node.name] = proc
        node.pid = proc.pid
        self._paused.discard(node.name)
        self._write_state()

    def _wait_ready(self, node: RedisNode) -> None:
        """Wait for PING (which fails with LOADING while an AOF/RDB is replayed)."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while not self._ping(node):
            if not self._alive(node):
                tail = self._log_tail(node)
                error = _PortInUse if "Address already in use" in tail else TopologyError
                raise error(f"{node.name} exited at start-up; log tail: {tail}")
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"{node.name} did not answer PING within {_READY_TIMEOUT:g}s; "
                    f"see {node.data_dir / 'redis.log'}"
                )
            time.sleep(_POLL)

    def _ping(self, node: RedisNode) -> bool:
        try:
            with self.client(node, socket_timeout=0.5) as conn:
                return bool(conn.ping())
        except (redis.RedisError, OSError):
            return False

    def _log_tail(self, node: RedisNode, lines: int = 8) -> str:
        """The last log lines on one line, password redacted, for an error message."""
        text = ""
        for name in ("redis.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text += (node.data_dir / name).read_text(errors="replace")
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return self._redact(" | ".join(tail)) or "(empty log)"

    def _redact(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def _running(self) -> bool:
        return any(node.pid is not None for node in self.nodes)

    def _alive(self, node: RedisNode) -> bool:
        proc = self._procs.get(node.name)
        if proc is not None:
            return proc.poll() is None
        return node.pid is not None and _is_redis_pid(node.pid)

    def _signal(self, node: RedisNode, sig: signal.Signals) -> None:
        """Signal a node only if its PID still is the redis process we started."""
        if node.pid is None or not self._alive(node):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, sig)

    def _terminate(self, nodes: Sequence[RedisNode]) -> None:
        """SIGTERM (so persistence is flushed), SIGKILL after the grace; all nodes at once.

        SIGCONT follows SIGTERM, as a paused node cannot act on it otherwise.
        """
        running = [node for node in nodes if node.pid is not None]
        for node in running:
            self._signal(node, signal.SIGTERM)
            self._signal(node, signal.SIGCONT)
        deadline = time.monotonic() + _STOP_GRACE
        for node in running:
            if not self._wait_exit(node, deadline - time.monotonic()):
                self._signal(node, signal.SIGKILL)
                self._wait_exit(node, _STOP_GRACE)
            self._forget_process(node)

    def _wait_exit(self, node: RedisNode, timeout: float) -> bool:
        """Wait for a node to exit (reaping it if it is our child); True once it is gone."""
        timeout = max(timeout, 0.0)
        proc = self._procs.get(node.name)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self._alive(node):
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
        return True

    def _forget_process(self, node: RedisNode) -> None:
        self._procs.pop(node.name, None)
        self._paused.discard(node.name)
        node.pid = None

    def _cli_tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--tls",
            "--cacert",
            str(self.tls.ca_cert),
            "--cert",
            str(self.tls.cert),
            "--key",
            str(self.tls.key),
        ]


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
            return [self._node_by_port(port) for port in sorted(_cluster_masters(text))]
        raise TopologyError(f"no cluster node under {self.run_dir} answers CLUSTER NODES")

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok with all 16384 slots served, all live
        nodes agree on who the masters are, and every live replica has its master link up.

        The agreement matters right after a restart: a returning old master still believes in
        its stale slot map (and says ok) until the others tell it about the failover.
        """
        _wait_for(self._healthy, timeout, f"cluster under {self.run_dir} to become healthy")

    def _healthy(self) -> bool:
        live = self._live_nodes()
        views: set[frozenset[int]] = set()
        for node in live:
            with self.client(node, socket_timeout=1.0) as conn:
                info = _parse_info(str(conn.execute_command("CLUSTER", "INFO")))
                views.add(
                    frozenset(_cluster_masters(str(conn.execute_command("CLUSTER", "NODES"))))
                )
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
            _binary("redis-cli"),
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


def _parse_info(text: str) -> dict[str, str]:
    """Parse ``key:value`` lines (CLUSTER INFO)."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _cluster_masters(nodes_text: str) -> set[int]:
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

        _wait_for(failed_over, timeout, f"sentinels to fail over from {old_master.name}")
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
            lines.append(f"sentinel auth-pass {self.service} {_quote(self.password)}")
        return lines

    def _bootstrap(self) -> None:
        """Master first, then replicas (pointed at its final port), then sentinels."""
        data, sentinels = self._data_nodes(), self._sentinel_nodes()
        for node in data:
            self._launch_fresh(node)
        _wait_for(self._replicas_synced, 15, f"replicas of {data[0].name} to sync")
        for node in sentinels:
            self._launch_fresh(node)
        _wait_for(self._sentinels_settled, 30, "sentinels to see the replicas and each other")

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


def start_topology(
    kind: str, run_dir: Path, *, persistence: Persistence = "none", **kwargs: Any
) -> Topology:
    """Build and start a topology by kind name; the CLI and load tests pick the kind from text."""
    kinds: dict[str, type[Topology]] = {
        "standalone": StandaloneTopology,
        "cluster": ClusterTopology,
        "sentinel": SentinelTopology,
    }
    if kind not in kinds:
        raise TopologyError(f"unknown topology kind {kind!r}; use one of {sorted(kinds)}")
    return kinds[kind](run_dir, persistence=persistence, **kwargs).start()


# Topologies started in this process and not stopped yet; atexit stops them so a test or
# script that forgot to call stop() does not leave redis processes running.
_LIVE: set[Topology] = set()


def _stop_forgotten() -> None:
    for topology in list(_LIVE):
        with contextlib.suppress(Exception):
            topology.stop()


atexit.register(_stop_forgotten)
