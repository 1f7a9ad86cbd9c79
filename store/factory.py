"""`endpoints.yml`'s `timer_store` section → a ready timer store.

`create_timer_store` picks the store from `type`: `in_memory` (also the default when the section
is absent), `redis`, or the module path of a custom class, as Rasa does.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, TypeGuard

from store.base import SessionTimerStore
from store.endpoint import EndpointConfig, expand_env
from store.errors import TimerStoreConfigError
from store.fallback import FallbackTimerStore
from store.memory import InMemoryTimerStore
from store.options import read_bool
from store.redis import RedisTimerStore

REQUIRED_METHODS = ("close", "store_timer", "delete_timer", "get_timer", "get_expired_timers")
"""What makes a class a timer store, whether or not it subclasses ours (Rasa's base works too)."""


def create_timer_store(
    config: EndpointConfig | Mapping[str, Any] | SessionTimerStore | None = None,
) -> SessionTimerStore:
    """Build the store an endpoints section asks for.

    - None, or `type: in_memory`: `InMemoryTimerStore`.
    - `type: redis`: `RedisTimerStore`, wrapped in `FallbackTimerStore` unless `fallback: false`.
    - `type: pkg.module.Class`: `Class(endpoint_config=config)`; the class must subclass
      `SessionTimerStore` or have the five methods.
    - An existing store is returned as is.
    """
    if config is None:
        return InMemoryTimerStore()
    if isinstance(config, EndpointConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = EndpointConfig.from_dict(expand_env(config))
    elif _looks_like_store(config):
        return config
    else:
        raise TimerStoreConfigError(
            "timer_store", f"must be a mapping or EndpointConfig, not {type(config).__name__}"
        )
    kind = cfg.type if cfg.type is not None else "in_memory"
    if not isinstance(kind, str) or not kind.strip():
        raise TimerStoreConfigError("type", f"must be a non-empty string, not {kind!r}")
    if kind in {"in_memory", "in-memory", "memory"}:
        return InMemoryTimerStore(endpoint_config=cfg)
    if kind == "redis":
        primary = RedisTimerStore(endpoint_config=cfg)
        if read_bool(cfg.kwargs, "fallback", True):
            return FallbackTimerStore(primary, endpoint_config=cfg)
        return primary
    if "." not in kind:
        raise TimerStoreConfigError(
            "type", f"unknown store type {kind!r}; use in_memory, redis or a module path"
        )
    return _build_custom(kind, cfg)


def _looks_like_store(candidate: object) -> TypeGuard[SessionTimerStore]:
    return isinstance(candidate, SessionTimerStore) or (
        not isinstance(candidate, type)
        and all(callable(getattr(candidate, name, None)) for name in REQUIRED_METHODS)
    )


def load_store_class(path: str) -> type:
    """Import `pkg.module.Class` and check that it is a timer store class."""
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TimerStoreConfigError(
            "type", f"cannot import module {module_name!r}: {exc}"
        ) from None
    except Exception as exc:  # a module that raises while importing is a config error too
        raise TimerStoreConfigError(
            "type", f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise TimerStoreConfigError("type", f"module {module_name!r} has no {class_name!r}")
    if not inspect.isclass(cls):
        raise TimerStoreConfigError("type", f"{path!r} is not a class")
    if not issubclass(cls, SessionTimerStore):
        missing = [name for name in REQUIRED_METHODS if not callable(getattr(cls, name, None))]
        if missing:
            raise TimerStoreConfigError(
                "type", f"{path!r} is not a timer store: it lacks {', '.join(missing)}"
            )
    return cls


def _build_custom(path: str, cfg: EndpointConfig) -> SessionTimerStore:
    cls = load_store_class(path)
    try:
        store = cls(endpoint_config=cfg)
    except TimerStoreConfigError:
        raise
    except TypeError as exc:
        raise TimerStoreConfigError("type", f"{path}(endpoint_config=...) failed: {exc}") from None
    return store  # type: ignore[no-any-return]
