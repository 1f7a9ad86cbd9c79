"""A real pod: the timer service behind a small HTTP API, one process of a load test.

Why aiohttp: it is small and asyncio-native, so the HTTP handlers, the timer runner, redis-py's
asyncio client and the fire callback's HTTP client share one event loop with no thread hops;
and its server runs inside this process, so there is no ASGI server (uvicorn) process or worker
model to configure, signal and stop: the SIGTERM drain below stays entirely under our control.

    python -m loadtest.pod --name pod-0 --port P --config endpoints.yml \
        --history DIR/pod-0.1.csv --receiver http://127.0.0.1:R [--incarnation 1]

Routes:
- `POST /conversations/{id}/messages` (JSON body optional: `session_id`, `timeout`) re-arms the
  conversation's timer and answers `{"scheduled_time", "instance", "pod"}`;
- `POST /conversations/{id}/end` cancels it;
- `GET /health`: `{"status": "ready"}`, or `"degraded"` while the Redis fallback serves (both
  200: a degraded pod still serves correctly from memory); 503 while starting or stopping;
- `GET /metrics`: Prometheus text: the library's `store.metrics.TimerMetrics`, the pod's
  requests, and the process's own collectors.

The pod writes its own history file (the simulator's schema, `record.history`) with the host's
wall clock as both true time and pod time: all pods of a load test share one host, so their
clocks agree. Each fire is POSTed to the deduplicating receiver; a failed POST raises, so the
service records the fire as failed and the lease re-fires it (at-least-once).

On SIGTERM the pod drains: it stops taking requests, stops claiming, lets in-flight fires
finish, merges the fallback back into Redis if it can (`TimerRunner.stop`), then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from redis.asyncio.cluster import RedisCluster

from loadtest.scenarios import ALLOW_DEGRADED, SESSION_TIMEOUT
from record.history import HistoryWriter
from record.logs import configure_logging
from record.pod_events import conversation_ended, message_failed, message_received, pod_started
from store.base import aclose_store
from store.endpoint import EndpointConfig, load_endpoint_config
from store.fallback import FallbackTimerStore, refusing_fallback
from store.looplag import LoopLag
from store.metrics import TimerMetrics
from store.redis.clients import RedisClient, build_client
from store.redis.keys import KeyScheme
from store.redis.settings import RedisSettings
from store.runner import build_runner

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
SCRAPE_TIMEOUT = 0.5
"""A metrics scrape waits this long for Redis' count, then reports it as unknown."""


@dataclass(frozen=True)
class PodOptions:
    """What one pod process is told on its command line."""

    name: str
    port: int
    config: Path
    history: Path
    receiver: str
    incarnation: int = 1
    session_timeout: float = SESSION_TIMEOUT
    receiver_timeout: float = 1.0


class FireRejected(RuntimeError):
    """The receiver did not accept a fire; raised so the service keeps the lease and retries."""


class BadRequest(ValueError):
    """A request body this API cannot use (answered 400, never recorded as a message)."""


class SharedPending:
    """An approximate count of the timers armed in Redis: ZCARD of each bucket's due set.

    Approximate because the buckets are read one by one, not atomically, and leased timers
    (claimed, callback running) are not in the due sets. It uses a client of its own, so a
    scrape never queues behind the store's calls, and the same endpoint (the pod's proxy).
    """

    def __init__(self, config: EndpointConfig) -> None:
        self.settings = RedisSettings.from_endpoint_config(config)
        self.keys = KeyScheme(self.settings.key_prefix, self.settings.buckets)
        self._client: RedisClient | None = None

    async def count(self) -> float:
        try:
            return await asyncio.wait_for(self._count(), SCRAPE_TIMEOUT)
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            return math.nan

    async def _count(self) -> float:
        if self._client is None:
            client = build_client(self.settings)
            if isinstance(client, RedisCluster):
                await client.initialize()
            self._client = client
        client = self._client
        counts = await asyncio.gather(*(client.zcard(b.due) for b in self.keys.all_buckets()))
        return float(sum(counts))

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self._client.aclose()


class Pod:
    """One pod: its timer runner, its HTTP API, its history, its metrics."""

    def __init__(self, options: PodOptions) -> None:
        self.options = options
        config = load_endpoint_config(options.config)
        if config is None:
            raise SystemExit(f"{options.config}: no timer_store section")
        self.history = HistoryWriter(options.history)
        self._record_event = self.history.sink(options.name, time.time, time.time)
        # The library's collectors, beside the process's own (CPU, memory, GC, file handles).
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.metrics = TimerMetrics(self.registry)
        self.messages = Counter(
            "timerlab_messages",
            "Conversation requests handled",
            ["action", "result"],
            registry=self.registry,
        )
        self.runner = build_runner(
            config, self._fire, sink=self.metrics.chained(self._record_event)
        )
        self.service = self.runner.service
        store = self.service.store
        self.fallback = store if isinstance(store, FallbackTimerStore) else None
        self.shared = SharedPending(config) if config.type == "redis" else None
        self._deployment_pending = math.nan
        self.metrics.track(
            self.runner, (lambda: self._deployment_pending) if self.shared is not None else None
        )
        self.lag = LoopLag(self._lag_window)
        self.ready = False
        self._client: aiohttp.ClientSession | None = None

    # -- events -----------------------------------------------------------------------------

    def record(self, kind: str, /, **fields: Any) -> None:
        """One event of this pod itself (boot, stop, messages, loop lag)."""
        now = time.time()
        self.history.record(now, now, self.options.name, kind, **fields)

    def _lag_window(self, worst: float) -> None:
        """The worst event-loop lag of the last second: in the history (the checker's
        loop_stall rule, the report's timeline) and in the metrics."""
        self.record("loop_lag", lag=round(worst, 4))
        self.metrics.loop_lag.set(worst)

    # -- the fire callback ------------------------------------------------------------------

    async def _fire(
        self, sender_id: str, session_id: str | None, scheduled_time: float, fire_id: str
    ) -> None:
        """Hand the fire to the receiver; any failure raises, so the lease retries it."""
        assert self._client is not None, "fire before the pod started"
        payload = {
            "fire_id": fire_id,
            "sender_id": sender_id,
            "session_id": session_id,
            "scheduled_time": scheduled_time,
            "pod": self.options.name,
        }
        async with self._client.post(f"{self.options.receiver}/fire", json=payload) as response:
            if response.status != 200:
                raise FireRejected(f"receiver answered {response.status}")

    # -- HTTP -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/conversations/{id}/messages", self._message)
        app.router.add_post("/conversations/{id}/end", self._end)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _message(self, request: web.Request) -> web.Response:
        sender = request.match_info["id"]
        try:
            body = await _json_body(request)
            session_id = _session_id(body)
            timeout = _timeout(body.get("timeout", self.options.session_timeout))
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        message_received(self.record, sender, session_id, timeout, time.time() + timeout)
        try:
            with _degraded_writes(request):
                scheduled = await self.service.schedule_timer(sender, session_id, timeout)
        except Exception as exc:  # the outcome is unknown: say so in the history and the reply
            return self._failed("message", sender, exc)
        self.messages.labels("message", "ok").inc()
        return web.json_response(
            {
                "scheduled_time": scheduled.scheduled_time,
                "instance": scheduled.stamp.instance,
                "pod": self.options.name,
            }
        )

    async def _end(self, request: web.Request) -> web.Response:
        sender = request.match_info["id"]
        conversation_ended(self.record, sender)
        try:
            with _degraded_writes(request):
                existed = await self.service.cancel_timer(sender)
        except Exception as exc:
            return self._failed("end", sender, exc)
        self.messages.labels("end", "ok").inc()
        return web.json_response({"cancelled": existed, "pod": self.options.name})

    def _failed(self, action: str, sender: str, exc: Exception) -> web.Response:
        log.error("pod.request_failed", action=action, sender_id=sender, error=str(exc))
        message_failed(self.record, sender, str(exc))
        self.messages.labels(action, "error").inc()
        return web.json_response({"error": str(exc), "pod": self.options.name}, status=503)

    async def _health(self, _: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"status": "unavailable"}, status=503)
        degraded = self.fallback is not None and self.fallback.active
        return web.json_response(
            {
                "status": "degraded" if degraded else "ready",
                "pod": self.options.name,
                "incarnation": self.options.incarnation,
            }
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        if self.shared is not None:  # measured before the scrape reads it (it waits on Redis)
            active = self.fallback is not None and self.fallback.active
            self._deployment_pending = math.nan if active else await self.shared.count()
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Boot, serve until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        timeout = aiohttp.ClientTimeout(total=self.options.receiver_timeout)
        self._client = aiohttp.ClientSession(timeout=timeout)
        pod_started(
            self.record, self.options.incarnation, self.service.delivery, self.fallback is not None
        )
        self.lag.start()
        await self.runner.start()
        server = web.AppRunner(self.app(), access_log=None, shutdown_timeout=5.0)
        await server.setup()
        await web.TCPSite(server, HOST, self.options.port).start()
        self.ready = True
        log.info("pod.ready", pod=self.options.name, port=self.options.port)
        await stop.wait()
        self.ready = False
        # Requests first: once the fallback has been merged back, no write may land in memory.
        await server.cleanup()
        await self.runner.stop()
        await self.lag.stop()
        await self._client.close()
        pending = self.fallback.fallback_pending() if self.fallback else 0
        await aclose_store(self.service.store)
        if self.shared is not None:
            await self.shared.aclose()
        self.record("pod_stop", incarnation=self.options.incarnation, fallback_pending=pending)
        self.history.close()
        log.info("pod.stopped", pod=self.options.name, fallback_pending=pending)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _session_id(body: dict[str, Any]) -> str | None:
    value = body.get("session_id")
    if value is None or isinstance(value, str):
        return value
    raise BadRequest("session_id must be a string")


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BadRequest(f"timeout must be a positive number, not {value!r}")
    if not math.isfinite(value):
        raise BadRequest(f"timeout must be finite, not {value!r}")
    return float(value)


def parse_args(argv: Sequence[str] | None = None) -> PodOptions:
    parser = argparse.ArgumentParser(description="One timerlab pod (load tests).")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True, help="endpoints.yml")
    parser.add_argument("--history", type=Path, required=True, help="this pod's history CSV")
    parser.add_argument("--receiver", required=True, help="base URL of the fire receiver")
    parser.add_argument("--incarnation", type=int, default=1)
    parser.add_argument("--session-timeout", type=float, default=SESSION_TIMEOUT)
    parser.add_argument("--receiver-timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    return PodOptions(
        name=args.name,
        port=args.port,
        config=args.config,
        history=args.history,
        receiver=args.receiver.rstrip("/"),
        incarnation=args.incarnation,
        session_timeout=args.session_timeout,
        receiver_timeout=args.receiver_timeout,
    )


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    asyncio.run(Pod(parse_args(argv)).run())


def _degraded_writes(request: web.Request) -> contextlib.AbstractContextManager[None]:
    """Refuse to park a write in this pod's memory unless the balancer says every pod is cut
    off: otherwise it answers 503 and the balancer sends the request to a peer that reaches
    Redis, where every pod can see the timer."""
    if request.headers.get(ALLOW_DEGRADED) == "1":
        return contextlib.nullcontext()
    return refusing_fallback()


if __name__ == "__main__":
    main()
