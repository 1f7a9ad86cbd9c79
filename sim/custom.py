"""How a custom store (`--store pkg.module.Class`) sits in the simulated world.

It stands for a shared backend: the world builds one instance per run and every pod reaches
it through its own `RemoteStore`, which adds that pod's network: latency before and after each
call, refusal while Redis is down or the pod is cut off, and a socket-timeout when Redis hangs.
The store itself is used through the five documented methods only, as a user's store would be.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sim.network import PodLink, until_resumed
from store.base import SessionTimerStore
from store.errors import StoreUnavailableError, TimerStoreConfigError
from store.factory import load_store_class
from store.timer import SessionTimer

T = TypeVar("T")


class RemoteStore(SessionTimerStore):
    """One pod's view of a shared custom store, across that pod's simulated network."""

    def __init__(self, shared: SessionTimerStore, link: PodLink, socket_timeout: float) -> None:
        super().__init__(getattr(shared, "endpoint_config", None))
        self.shared = shared
        self.link = link
        self.socket_timeout = socket_timeout

    def close(self) -> None:
        """The shared store is closed by the world at the end of the run, not per pod."""

    async def _remote(self, call: Callable[[], Awaitable[T]]) -> T:
        await asyncio.sleep(self.link.one_way())
        if not self.link.reachable():
            raise StoreUnavailableError("connection refused")
        redis = self.link.redis
        if redis.paused:
            resumed = asyncio.ensure_future(until_resumed(redis))
            done, _ = await asyncio.wait({resumed}, timeout=self.socket_timeout)
            if not done:
                resumed.cancel()
                raise StoreUnavailableError("timed out")
        result = await call()
        await asyncio.sleep(redis.extra_latency + self.link.one_way())
        return result

    async def store_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        await self._remote(
            lambda: self.shared.store_timer(sender_id, session_id, scheduled_time, metadata)
        )

    async def delete_timer(
        self, sender_id: str, only_if_scheduled_time: float | None = None
    ) -> bool:
        return await self._remote(
            lambda: self.shared.delete_timer(sender_id, only_if_scheduled_time)
        )

    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        return await self._remote(lambda: self.shared.get_timer(sender_id))

    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        return await self._remote(lambda: self.shared.get_expired_timers(cutoff_time))


def resolve_store_target(path: str) -> type | Callable[..., SessionTimerStore]:
    """What `--store pkg.module.name` names: a store class (checked as `endpoints.yml`'s
    `type` is), or a pod-stack factory `f(context) -> store`."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise TimerStoreConfigError("type", f"{path!r}: give a module path, pkg.module.Name")
    try:
        target = getattr(importlib.import_module(module_name), name, None)
    except ImportError as exc:
        raise TimerStoreConfigError(
            "type", f"cannot import module {module_name!r}: {exc}"
        ) from None
    if isinstance(target, type):
        return load_store_class(path)
    if callable(target):
        return target  # type: ignore[no-any-return]
    raise TimerStoreConfigError("type", f"{path!r} is not a store class or a factory")
