"""Real redis-server / redis-sentinel topologies on loopback, for tests, load tests and the CLI.

Why real processes: the timer stores must be proven against what only a real server does
(fsync policy on a crash, replica promotion, cluster slot moves, a stalled process), which an
in-memory fake cannot show. Everything binds 127.0.0.1, lives under one run directory (one
sub-directory per node) and is recorded with its PID in ``topology.json``, so a different
process (``timerlab topology down``) can stop what this one started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from servers.nodes import (
    HOST,
    PERSISTENCE_CONF,
    PERSISTENCE_MODES,
    POLL,
    PORT_ATTEMPTS,
    READY_TIMEOUT,
    STATE_FILE,
    STOP_GRACE,
    Persistence,
    PortInUse,
    RedisNode,
    TlsFiles,
    TopologyError,
    free_port,
    is_redis_pid,
    node_command,
    quote_conf,
)


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
        if not self._wait_exit(node, STOP_GRACE):
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
            except PortInUse as exc:
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
        from servers.kinds import TOPOLOGIES as kinds  # the kinds are built on this class

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
            f"dir {quote_conf(node.data_dir)}",
            f"logfile {quote_conf(node.data_dir / 'redis.log')}",
        ]
        if self.tls is not None:
            lines += [
                f"tls-cert-file {quote_conf(self.tls.cert)}",
                f"tls-key-file {quote_conf(self.tls.key)}",
                f"tls-ca-cert-file {quote_conf(self.tls.ca_cert)}",
                "tls-auth-clients optional",
                "tls-replication yes",
            ]
        if node.role != "sentinel":
            lines += PERSISTENCE_CONF[self.persistence]
            # Redis 7 waits 5 s by default before a diskless full sync; tests cannot afford it.
            lines.append("repl-diskless-sync-delay 0")
            if self.password is not None:
                lines += [
                    f"requirepass {quote_conf(self.password)}",
                    f"masterauth {quote_conf(self.password)}",
                ]
        lines += self._node_conf(node)
        if node.role != "sentinel":
            lines += [f"{key} {value}" for key, value in self.extra_config.items()]
        return "\n".join(lines) + "\n"

    def _launch_fresh(self, node: RedisNode) -> None:
        """First start of a node: clean dir, new conf; move to another port if it was raced away."""
        for attempt in range(PORT_ATTEMPTS):
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node.data_dir.mkdir(parents=True)
            node.conf_path.write_text(self._render(node))
            self._spawn(node)
            try:
                self._wait_ready(node)
                return
            except PortInUse as exc:
                self._forget_process(node)
                if self._fixed_ports or attempt == PORT_ATTEMPTS - 1:
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
                node_command(node),
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
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ping(node):
            if not self._alive(node):
                tail = self._log_tail(node)
                error = PortInUse if "Address already in use" in tail else TopologyError
                raise error(f"{node.name} exited at start-up; log tail: {tail}")
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"{node.name} did not answer PING within {READY_TIMEOUT:g}s; "
                    f"see {node.data_dir / 'redis.log'}"
                )
            time.sleep(POLL)

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
        return node.pid is not None and is_redis_pid(node.pid)

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
        deadline = time.monotonic() + STOP_GRACE
        for node in running:
            if not self._wait_exit(node, deadline - time.monotonic()):
                self._signal(node, signal.SIGKILL)
                self._wait_exit(node, STOP_GRACE)
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
            time.sleep(POLL)
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


# Topologies started in this process and not stopped yet; atexit stops them so a test or
# script that forgot to call stop() does not leave redis processes running.
_LIVE: set[Topology] = set()


def _stop_forgotten() -> None:
    for topology in list(_LIVE):
        with contextlib.suppress(Exception):
            topology.stop()


atexit.register(_stop_forgotten)
