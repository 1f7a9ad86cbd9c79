"""`endpoints.yml` → a ready timer store.

`EndpointConfig` mirrors Rasa's: `type` and `url` are attributes, every other key of the section
is in `kwargs`. `create_timer_store` picks the store from `type`: `in_memory` (also the default
when the section is absent), `redis`, or the module path of a custom class.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from store.base import SessionTimerStore
from store.errors import TimerStoreConfigError, redact

REQUIRED_METHODS = ("close", "store_timer", "delete_timer", "get_timer", "get_expired_timers")
"""What makes a class a timer store, whether or not it subclasses ours (Rasa's base works too)."""

_ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")


class EndpointConfig:
    """One endpoint section of `endpoints.yml`, as Rasa models it."""

    def __init__(self, url: str | None = None, type: str | None = None, **kwargs: Any) -> None:
        self.url = url
        self.type = type
        self.kwargs: dict[str, Any] = kwargs

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointConfig:
        """Build from a section mapping; `store_type` is accepted as Rasa's old name for `type`."""
        values = dict(data)
        if "store_type" in values and "type" not in values:
            values["type"] = values.pop("store_type")
        bad = [key for key in values if not isinstance(key, str)]
        if bad:
            raise TimerStoreConfigError(str(bad[0]), "keys must be strings")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The section as plain data (with `url` and `type` only when set)."""
        data: dict[str, Any] = {}
        if self.type is not None:
            data["type"] = self.type
        if self.url is not None:
            data["url"] = self.url
        data.update(self.kwargs)
        return data

    def __repr__(self) -> str:
        """Never shows secrets: the password is masked."""
        shown = {k: ("***" if "password" in k else v) for k, v in self.as_dict().items()}
        return redact(f"EndpointConfig({shown})")


def load_endpoint_config(
    path: str | os.PathLike[str], section: str = "timer_store"
) -> EndpointConfig | None:
    """Read `section` of an endpoints file; None when the section is absent.

    `${VAR}` in any string value is replaced from the environment, as Rasa does; a variable that
    is not set is an error naming it, never an empty string.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TimerStoreConfigError(
            str(file), f"cannot read it: {exc.strerror}", section=None
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TimerStoreConfigError(str(file), f"not valid YAML: {exc}", section=None) from None
    if document is None:
        return None
    if not isinstance(document, dict):
        raise TimerStoreConfigError(
            str(file), f"must hold a mapping, not a {type(document).__name__}", section=None
        )
    raw = document.get(section)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TimerStoreConfigError(
            section, f"must be a mapping, not a {type(raw).__name__}", section=None
        )
    return EndpointConfig.from_dict(expand_env(raw))


def expand_env(values: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Replace `${VAR}` references in string values (recursively) from `os.environ`."""
    expanded: dict[str, Any] = {}
    for key, value in values.items():
        expanded[key] = _expand_value(value, f"{path}{key}")
    return expanded


def _expand_value(value: Any, key: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise TimerStoreConfigError(key, f"environment variable {name!r} is not set")
            return os.environ[name]

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, Mapping):
        return expand_env(value, f"{key}.")
    if isinstance(value, list):
        return [_expand_value(item, f"{key}[{index}]") for index, item in enumerate(value)]
    return value


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
    from store.fallback import FallbackTimerStore
    from store.memory import InMemoryTimerStore
    from store.options import read_bool
    from store.redis import RedisTimerStore

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
