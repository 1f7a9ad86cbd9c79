"""Tests for servers.topology against real redis-server / redis-sentinel processes on loopback.

They are the proof that the failure tools do what the store tests rely on: a SIGKILL loses
exactly what the persistence mode did not keep, SIGSTOP stalls a node, a sentinel group or a
cluster really fails over, and `down` from another process leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from servers import (
    ClusterTopology,
    Persistence,
    SentinelTopology,
    StandaloneTopology,
    TlsFiles,
    Topology,
    TopologyError,
    start_topology,
    topology,
)
from servers.tls import generate_tls

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]

PROJECT_ROOT = Path(topology.__file__).resolve().parents[1]
# redis-py retries connection errors (AuthenticationError is one) ten times by default.
NO_RETRY = Retry(NoBackoff(), 0)


def is_running(pid: int | None) -> bool:
    """A live redis process; a zombie (empty cmdline) counts as gone."""
    if pid is None:
        return False
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """PIDs still running after ``timeout``: orphans are reaped by init a little later."""
    deadline = time.monotonic() + timeout
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if is_running(pid)]


@pytest.mark.redis
def test_standalone_start_ping_stop_leaves_no_process(tmp_path: Path) -> None:
    topo = StandaloneTopology(tmp_path).start()
    node = topo.nodes[0]
    pid = node.pid
    assert is_running(pid)
    assert topo.client(node).ping()
    assert topo.timer_store_config() == {
        "type": "redis",
        "host": "127.0.0.1",
        "port": node.port,
        "db": 0,
    }

    topo.stop()
    topo.stop()  # idempotent

    assert not is_running(pid)
    assert node.pid is None
    state = json.loads((tmp_path / "topology.json").read_text())
    assert state["kind"] == "standalone"
    assert [n["pid"] for n in state["nodes"]] == [None]


@pytest.mark.redis
def test_context_manager_stops_on_keyboard_interrupt(tmp_path: Path) -> None:
    pids: list[int | None] = []

    def interrupted_run() -> None:
        with StandaloneTopology(tmp_path) as topo:
            pids.append(topo.nodes[0].pid)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert pids[0] is not None
    assert not is_running(pids[0])


@pytest.mark.redis
@pytest.mark.parametrize(("persistence", "expected"), [("aof_always", "kept"), ("none", None)])
def test_kill_and_restart_keeps_only_what_persistence_kept(
    tmp_path: Path, persistence: Persistence, expected: str | None
) -> None:
    with start_topology("standalone", tmp_path, persistence=persistence) as topo:
        node = topo.nodes[0]
        topo.client(node).set("key", "kept")
        old_pid, port = node.pid, node.port

        topo.kill(node)
        assert node.pid is None
        assert not is_running(old_pid)
        topo.restart(node)

        assert node.pid not in (None, old_pid)
        assert node.port == port
        assert topo.client(node).get("key") == expected


@pytest.mark.redis
def test_pause_stalls_the_node_and_resume_recovers_it(tmp_path: Path) -> None:
    with StandaloneTopology(tmp_path) as topo:
        node = topo.nodes[0]
        client = topo.client(node, socket_timeout=0.2)
        assert client.ping()

        topo.pause(node)
        with pytest.raises(redis.TimeoutError):
            client.ping()
        topo.resume(node)

        assert topo.client(node, socket_timeout=0.2).ping()


@pytest.mark.redis
def test_password_is_required_and_never_stored_in_the_state_file(tmp_path: Path) -> None:
    secret = "s3cret pass#word"
    with StandaloneTopology(tmp_path, password=secret) as topo:
        node = topo.nodes[0]
        with (
            redis.Redis(port=node.port, socket_timeout=2, retry=NO_RETRY) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
        assert topo.client(node).ping()
        assert topo.timer_store_config()["password"] == secret

        state_text = (tmp_path / "topology.json").read_text()
        assert secret not in state_text
        assert json.loads(state_text)["params"]["password_set"] is True
        reloaded = Topology.load(tmp_path, password=secret)
        assert reloaded.client(reloaded.nodes[0]).ping()


@pytest.mark.redis
def test_load_from_state_file_stops_a_topology_started_by_another_process(
    tmp_path: Path,
) -> None:
    # The child starts a topology, detaches it from its atexit cleanup and exits, as
    # `timerlab topology up` does; this process then plays `timerlab topology down`.
    script = (
        "import sys; from pathlib import Path; from servers import start_topology; "
        "t = start_topology('sentinel', Path(sys.argv[1]), replicas=1, sentinels=1); t.detach()"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True, timeout=60)

    topo = Topology.load(tmp_path)
    assert isinstance(topo, SentinelTopology)
    pids = [node.pid for node in topo.nodes if node.pid is not None]
    assert len(pids) == 3
    assert all(is_running(pid) for pid in pids)

    topo.stop()

    assert wait_gone(pids) == []
    reloaded = json.loads((tmp_path / "topology.json").read_text())
    assert all(node["pid"] is None for node in reloaded["nodes"])


@pytest.mark.redis
def test_fresh_node_moves_to_another_port_when_its_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        real_free_port = topology.free_port
        handed: list[int] = []

        def racy_free_port(**kwargs: object) -> int:
            handed.append(busy if not handed else real_free_port())
            return handed[-1]

        monkeypatch.setattr(topology, "free_port", racy_free_port)
        with StandaloneTopology(tmp_path / "moved") as topo:
            assert topo.nodes[0].port != busy
            assert topo.client(topo.nodes[0]).ping()

        with pytest.raises(TopologyError, match="in use"):
            StandaloneTopology(tmp_path / "fixed", port=busy).start()


@pytest.mark.redis
def test_cluster_serves_all_slots_and_fails_over(tmp_path: Path) -> None:
    with ClusterTopology(tmp_path, masters=3, replicas_per_master=1) as topo:
        assert len(topo.nodes) == 6
        for node in topo.nodes:
            info = topo.client(node).execute_command("CLUSTER", "INFO")
            assert "cluster_state:ok" in info
        masters = topo.masters()
        assert len(masters) == 3
        config = topo.timer_store_config()
        assert config["deployment_mode"] == "cluster"
        assert sorted(config["endpoints"]) == sorted(m.address() for m in masters)

        # Enough keys that every master owns some; each master then holds data.
        with RedisCluster(host="127.0.0.1", port=masters[0].port, decode_responses=True) as rc:
            for i in range(64):
                rc.set(f"key-{i}", i)
            assert rc.get("key-7") == "7"
        assert all(topo.client(m).dbsize() > 0 for m in masters)

        # A killed master is replaced by its replica; back, it rejoins as a replica.
        victim = masters[0]
        topo.kill(victim)
        topo.wait_healthy(timeout=15)
        after = topo.masters()
        assert len(after) == 3
        assert victim not in after
        topo.restart(victim)
        topo.wait_healthy(timeout=15)
        assert topo.client(victim).execute_command("ROLE")[0] == "slave"


@pytest.mark.redis
def test_sentinel_group_fails_over_a_killed_master(tmp_path: Path) -> None:
    with SentinelTopology(tmp_path, replicas=1, sentinels=3) as topo:
        master = topo.current_master()
        assert master.name == "redis-0"
        assert topo.client(master).execute_command("ROLE")[0] == "master"
        config = topo.timer_store_config()
        assert config["deployment_mode"] == "sentinel"
        assert config["sentinel_service"] == "mymaster"
        assert len(config["endpoints"]) == 3

        topo.kill(master)
        started = time.monotonic()
        promoted = topo.wait_failover(master, timeout=15)

        assert time.monotonic() - started < 15
        assert promoted != master
        assert topo.current_master() == promoted
        assert topo.client(promoted).execute_command("ROLE")[0] == "master"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (servers.tls, with trustme)."""
    return generate_tls(tmp_path_factory.mktemp("tls")).server_files()


@pytest.mark.redis
def test_tls_node_listens_only_on_its_tls_port(tmp_path: Path, tls_files: TlsFiles) -> None:
    with StandaloneTopology(tmp_path, tls=tls_files) as topo:
        node = topo.nodes[0]
        assert topo.client(node).ping()
        with (
            redis.Redis(port=node.port, socket_timeout=1, retry=NO_RETRY) as plain,
            pytest.raises(redis.ConnectionError),
        ):
            plain.ping()
        config = topo.timer_store_config()
        assert config["use_ssl"] is True
        assert config["ssl_ca_certs"] == str(tls_files.ca_cert)
