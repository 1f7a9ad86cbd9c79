"""`timerlab load`: one load run against real processes, judged by the simulator's checker.

A run, in order: a Redis topology (`servers.topology`) under `out/redis`; the fire receiver;
for standalone Redis one proxy per pod (`loadtest.proxy`); the pods; the chaos controller and
Locust (headless, or a master with W workers), for `duration` seconds; then a quiet period in
which every timer armed by the load comes due and fires. Then everything is stopped by PID,
the per-process histories are merged into `out/history.csv`, `out/run.json` describes the run
to the checker, and `out/verdict.txt` holds its verdict. Locust's CSV and HTML stay beside.

Every process is started in its own session (a Ctrl-C meant for this process does not reach
them half-way) and recorded; whatever way the run ends (success, failure, exception, Ctrl-C,
SIGTERM) they are stopped by PID: SIGTERM, then SIGKILL after a grace. Servers bind 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import yaml

from loadtest.chaos import FAILOVER_TIMEOUT, ChaosController, WorldLog
from loadtest.measure import commands_processed, measured_since, pods_cpu
from loadtest.proxy import HOST, ProxyControl
from loadtest.scenarios import (
    MIN_FAULT_RUN,
    MIN_PODS,
    ONLY_ON,
    SCENARIOS,
    SESSION_TIMEOUT,
    SHAPES,
    LoadSettings,
    fault_plan,
)
from record.history import merge_histories
from record.runinfo import RunInfo
from servers import (
    PERSISTENCE_MODES,
    TOPOLOGIES,
    Persistence,
    StandaloneTopology,
    Topology,
    build_topology,
    free_port,
)
from store.endpoint import EndpointConfig
from store.redis.settings import RedisSettings

__all__ = ["SCENARIOS", "LoadOptions", "run_load"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LATENCY = 0.005
"""The one-way pod-Redis latency declared to the checker: loopback plus a proxy hop, with room
for a busy host (the checker's bounds use 4 of them)."""
STOP_GRACE = 15.0
"""SIGTERM to SIGKILL: a pod drains (in-flight fires, fallback merge) within this."""
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class LoadOptions:
    """What `timerlab load` was asked for."""

    scenario: str
    users: int = 50
    duration: float = 30.0
    pods: int = 3
    topology: str = "standalone"
    persistence: str = "aof_everysec"
    workers: int = 0
    shape: str = "steady"
    out: Path = Path("runs/load")
    quiet_period: float | None = None
    store_section: dict[str, Any] | None = None
    """The `timer_store` section each pod builds its store from (None: the reference store);
    its connection keys are pointed at the run's Redis."""
    loop_stall_bound: float = 1.0
    """The longest event-loop stall a pod may have (rule loop_stall)."""


def check_options(options: LoadOptions) -> None:
    """Raise `ValueError` (one line) for options that cannot make a meaningful run."""
    o = options

    def one_of(name: str, value: str, choices: Sequence[str]) -> None:
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")

    one_of("scenario", o.scenario, SCENARIOS)
    one_of("topology", o.topology, tuple(TOPOLOGIES))
    one_of("persistence", o.persistence, PERSISTENCE_MODES)
    one_of("shape", o.shape, SHAPES)
    if o.users < 1 or o.pods < 1 or o.workers < 0:
        raise ValueError("--users and --pods must be at least 1, --workers at least 0")
    if not o.duration > 0:
        raise ValueError("--duration must be positive")
    if o.quiet_period is not None and not o.quiet_period >= 0:
        raise ValueError("the quiet period must not be negative")
    needs = ONLY_ON.get(o.scenario)
    if needs is not None and o.topology not in needs:
        raise ValueError(f"scenario {o.scenario} needs --topology {needs[0]}, not {o.topology}")
    if o.pods < MIN_PODS.get(o.scenario, 1):
        raise ValueError(f"scenario {o.scenario} needs --pods {MIN_PODS[o.scenario]} or more")
    if fault_plan(o.scenario, o.duration, o.pods) and o.duration < MIN_FAULT_RUN:
        raise ValueError(f"scenario {o.scenario} needs --duration {MIN_FAULT_RUN:g} or more")


# -- processes ----------------------------------------------------------------------------------


class Processes:
    """Every process a run starts, by name and PID, so every exit path can stop them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def spawn(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        with self._lock:
            self._procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL one process and reap it: a crash, nothing runs after it."""
        with self._lock:
            proc = self._procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, names: Sequence[str], grace: float = STOP_GRACE) -> None:
        """SIGTERM the named processes together, SIGKILL any still alive after `grace`."""
        with self._lock:
            procs = [self._procs.pop(name) for name in names if name in self._procs]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def names(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    def stop_all(self) -> None:
        """Locust and the pods together (pods drain through their proxies into Redis and hand
        their last fires to the receiver), then the receiver and the proxies."""
        last = ("receiver", "proxy")
        self.stop([name for name in self.names() if name not in last])
        self.stop(last)

    def log_tail(self, name: str, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = (self.logs / f"{name}.log").read_text(errors="replace")
            return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())
        return "(no log)"


def _http_json(url: str, *, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def _wait_ready(processes: Processes, name: str, proc: subprocess.Popen[bytes], url: str) -> None:
    """Until `url` answers 200; fails fast, with the log tail, if the process died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {proc.returncode}: {processes.log_tail(name)}"
            )
        with contextlib.suppress(OSError, ValueError):
            _http_json(url, timeout=0.5)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready within {READY_TIMEOUT:g} s: {url}")
        time.sleep(0.05)


class Fleet:
    """The pods: ports, configs, incarnations; started, killed and restarted by index."""

    def __init__(
        self,
        processes: Processes,
        out: Path,
        configs: Sequence[Path],
        receiver: str,
        settings: LoadSettings,
    ) -> None:
        self.processes = processes
        self.out = out
        self.configs = list(configs)
        self.receiver = receiver
        self.settings = settings
        self.ports = [free_port() for _ in configs]
        self.incarnations = [0] * len(configs)
        self._running: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def url(self, index: int) -> str:
        return f"http://{HOST}:{self.ports[index]}"

    def spawn(self, index: int) -> None:
        self.incarnations[index] += 1
        incarnation = self.incarnations[index]
        name = f"pod-{index}.{incarnation}"
        argv = [
            sys.executable, "-m", "loadtest.pod",
            "--name", f"pod-{index}",
            "--port", str(self.ports[index]),
            "--config", str(self.configs[index]),
            "--history", str(self.out / "histories" / f"{name}.csv"),
            "--receiver", self.receiver,
            "--incarnation", str(incarnation),
            "--session-timeout", repr(SESSION_TIMEOUT),
            "--receiver-timeout", repr(self.settings.receiver_timeout),
        ]  # fmt: skip
        self._running[index] = (name, self.processes.spawn(name, argv))

    def wait_ready(self, index: int) -> None:
        name, proc = self._running[index]
        _wait_ready(self.processes, name, proc, f"{self.url(index)}/health")

    def kill(self, index: int) -> int:
        name, _ = self._running.pop(index)
        self.processes.kill(name)
        return self.incarnations[index]


@dataclass
class _Deployment:
    """The running servers; also what the chaos controller acts on (`chaos.Deployment`)."""

    topology: Topology
    fleet: Fleet
    proxies: ProxyControl | None
    receiver: str
    store: RedisSettings
    """How the pods reach and lay out Redis (the checker needs its buckets and key prefix)."""

    def kill_pod(self, index: int) -> int:
        return self.fleet.kill(index)

    def start_pod(self, index: int) -> None:
        self.fleet.spawn(index)
        self.fleet.wait_ready(index)

    def cut(self, pod: str) -> None:
        if self.proxies is None:
            raise RuntimeError("no proxies: pod partitions need the standalone topology")
        self.proxies.cut(pod)

    def restore(self, pod: str) -> None:
        if self.proxies is not None:
            self.proxies.restore(pod)


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM to this process unwinds like Ctrl-C, so the clean-up still runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """The clean-up runs to its end: a second Ctrl-C in it would leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _topology(options: LoadOptions, out: Path) -> Topology:
    persistence = cast(Persistence, options.persistence)  # checked by check_options
    return build_topology(options.topology, out / "redis", persistence=persistence)


def _prepare(out: Path) -> None:
    """A clean run directory: this run's outputs only (other files in it are left alone)."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("histories", "logs", "config", "redis"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for name in ("history.csv", "run.json", "verdict.txt", "receiver.csv", "locust.html"):
        (out / name).unlink(missing_ok=True)
    for stale in out.glob("locust_*.csv"):
        stale.unlink()


def run_load(options: LoadOptions, progress: Callable[[str], None] = print) -> Path:
    """Run one load scenario end to end; returns its directory (history.csv, run.json),
    which `harness.load.judge_load` judges."""
    check_options(options)
    out = options.out.resolve()
    _prepare(out)
    settings = LoadSettings()
    quiet = (
        settings.default_quiet_period() if options.quiet_period is None else options.quiet_period
    )
    processes = Processes(out / "logs")
    world = WorldLog(out / "histories" / "world.csv")
    topology = _topology(options, out)
    faults = fault_plan(options.scenario, options.duration, options.pods)
    chaos: ChaosController | None = None
    with _sigterm_interrupts():
        try:
            progress(f"starting {options.topology} redis ({options.persistence}) in {out}")
            topology.start()
            deployment = _start_servers(options, out, topology, processes, settings)
            progress(
                f"{options.pods} pods ready" + (" behind proxies" if deployment.proxies else "")
            )
            world.record("run_start", scenario=options.scenario, users=options.users)
            commands_before = commands_processed(topology)
            load_start = time.time()
            chaos = ChaosController(
                deployment, faults, world, persistence=options.persistence, progress=progress
            )
            progress(
                f"load: {options.users} users for {options.duration:g} s, shape {options.shape}, "
                f"{options.workers or 'no'} Locust workers, faults: "
                + (", ".join(f.describe() for f in faults) or "none")
            )
            chaos.start(time.time())
            _run_locust(options, out, processes, deployment.fleet, progress)
            chaos.join(FAILOVER_TIMEOUT + 30)
            progress(f"quiet period: {quiet:g} s for the last timers to fire")
            time.sleep(quiet)
            end = world.record("run_end")
            stats: dict[str, Any] = _http_json(f"{deployment.receiver}/stats")
            measured = measured_since(commands_before, commands_processed(topology), load_start)
            measured.update(pods_cpu([deployment.fleet.url(i) for i in range(options.pods)]))
        finally:
            with _uninterrupted():
                if chaos is not None:
                    chaos.stop()
                progress("stopping every process")
                processes.stop_all()
                topology.stop()
                world.close()
    return _describe(options, out, settings, deployment.store, end, stats, chaos.errors, measured)


CONNECTION_KEYS = (
    "host", "port", "db", "password", "deployment_mode", "endpoints", "sentinel_service",
    "use_ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
)  # fmt: skip
"""What the run sets in a user's section so that the store reaches the run's Redis."""


def store_section(user: dict[str, Any] | None, reference: dict[str, Any]) -> dict[str, Any]:
    """One pod's `timer_store` section: the reference store's (`reference`: the topology's
    connection keys and the run's service settings), or the user's own with those connection
    keys set (its `url`, if it has one, becomes a redis URL of the same host, port and db)."""
    if user is None:
        return dict(reference)
    service = {k: v for k, v in reference.items() if k not in CONNECTION_KEYS and k != "type"}
    connection = {k: reference[k] for k in CONNECTION_KEYS if k in reference}
    section = {**user, **service, **connection}
    if "url" in user and "host" in reference:
        section["url"] = f"redis://{reference['host']}:{reference['port']}/{reference.get('db', 0)}"
    return section


def _start_servers(
    options: LoadOptions,
    out: Path,
    topology: Topology,
    processes: Processes,
    settings: LoadSettings,
) -> _Deployment:
    """Receiver, proxies (standalone only), pod configs and pods, each ready when it returns."""
    receiver_port = free_port()
    receiver = f"http://{HOST}:{receiver_port}"
    argv = [sys.executable, "-m", "loadtest.receiver", "--port", str(receiver_port)]
    proc = processes.spawn("receiver", [*argv, "--log", str(out / "receiver.csv")])
    _wait_ready(processes, "receiver", proc, f"{receiver}/stats")
    base = {**topology.timer_store_config(), **settings.section()}
    sections = [store_section(options.store_section, base) for _ in range(options.pods)]
    proxies: ProxyControl | None = None
    if isinstance(topology, StandaloneTopology):
        # Each pod gets its own proxy port in front of the one Redis.
        control = free_port()
        routes = []
        for index in range(options.pods):
            port = free_port()
            routes += ["--route", f"pod-{index}={port}:{base['host']}:{base['port']}"]
            sections[index] = store_section(options.store_section, {**base, "port": port})
        argv = [sys.executable, "-m", "loadtest.proxy", "--control", str(control), *routes]
        proc = processes.spawn("proxy", argv)
        _wait_ready(processes, "proxy", proc, f"http://{HOST}:{control}/status")
        proxies = ProxyControl(control)
    configs = []
    for index, section in enumerate(sections):
        path = out / "config" / f"pod-{index}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"timer_store": section}, sort_keys=False))
        configs.append(path)
    fleet = Fleet(processes, out, configs, receiver, settings)
    for index in range(options.pods):
        fleet.spawn(index)  # all at once: they boot in parallel
    for index in range(options.pods):
        fleet.wait_ready(index)
    store = RedisSettings.from_endpoint_config(EndpointConfig.from_dict(base))
    return _Deployment(topology, fleet, proxies, receiver, store)


def _run_locust(
    options: LoadOptions,
    out: Path,
    processes: Processes,
    fleet: Fleet,
    progress: Callable[[str], None],
) -> None:
    """Locust in its own process(es), headless; returns when the load is over.

    `TIMERLAB_REMOTE_WORKERS=R` makes the master also wait for R workers on other machines,
    which reach it and the pods through SSH tunnels (see loadtest/README.md).
    """
    pods = [fleet.url(index) for index in range(options.pods)]
    remote = int(os.environ.get("TIMERLAB_REMOTE_WORKERS", "0") or 0)
    env = {"TIMERLAB_PODS": ",".join(pods), "TIMERLAB_SHAPE": options.shape}
    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    run = [
        "--headless", "--only-summary",
        "-u", str(options.users),
        "-r", repr(max(1.0, options.users / 5)),
        "-t", f"{max(1, round(options.duration))}s",
        "--csv", str(out / "locust"),
        "--html", str(out / "locust.html"),
        "--host", pods[0],
    ]  # fmt: skip
    if options.workers + remote == 0:
        master = processes.spawn("locust", [*locust, *run], env)
    else:
        port = free_port()
        distributed = [
            "--master", "--master-bind-host", HOST, "--master-bind-port", str(port),
            "--expect-workers", str(options.workers + remote),
            "--expect-workers-max-wait", "300" if remote else "60",
        ]  # fmt: skip
        master = processes.spawn("locust", [*locust, *run, *distributed], env)
        for index in range(options.workers):
            worker = ["--worker", "--master-host", HOST, "--master-port", str(port)]
            processes.spawn(f"locust-worker-{index}", [*locust, *worker], env)
        if remote:
            progress(_remote_worker_hint(remote, port, fleet.ports, env))
    try:
        master.wait(options.duration + (420 if remote else 120))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Locust did not finish: {processes.log_tail('locust')}") from None
    if not (out / "locust_stats.csv").exists():
        raise RuntimeError(f"Locust wrote no statistics: {processes.log_tail('locust')}")
    processes.stop([name for name in processes.names() if name.startswith("locust")])


def _remote_worker_hint(count: int, master: int, pods: Sequence[int], env: dict[str, str]) -> str:
    """The commands to run on each load machine: tunnels to this host, then one worker."""
    tunnels = " ".join(f"-L {port}:{HOST}:{port}" for port in (master, *pods))
    settings = " ".join(f"{key}={value}" for key, value in env.items())
    return (
        f"waiting up to 300 s for {count} remote Locust worker(s); on each load machine run:\n"
        f"  ssh -N -f {tunnels} THIS_HOST\n"
        f"  {settings} python -m locust -f loadtest/locustfile.py --worker "
        f"--master-host {HOST} --master-port {master}"
    )


# -- the verdict --------------------------------------------------------------------------------


def _describe(
    options: LoadOptions,
    out: Path,
    settings: LoadSettings,
    store: RedisSettings,
    end: float,
    receiver: dict[str, Any],
    chaos_errors: Sequence[str],
    measured: dict[str, Any],
) -> Path:
    """Merge the histories and describe the run (`run.json`); the harness judges it."""
    merge_histories((out / "histories").glob("*.csv"), out / "history.csv")
    info = RunInfo(
        kind="load",
        scenario=options.scenario,
        service=settings.service,
        socket_timeout=settings.socket_timeout,
        latency=LATENCY,
        fire_duration=settings.receiver_timeout,
        max_skew=0.0,
        buckets=store.buckets,
        key_prefix=store.key_prefix,
        custom_in_redis=(options.store_section or {}).get("type") not in (None, "redis"),
        loop_stall_bound=options.loop_stall_bound,
        end=end,
    )
    options_data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    run_file = {
        "info": info.to_data(),
        "options": options_data,
        "receiver": receiver,
        "chaos_errors": list(chaos_errors),
        "measured": measured,
    }
    (out / "run.json").write_text(json.dumps(run_file, indent=2) + "\n")
    return out
