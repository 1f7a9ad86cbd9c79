"""`endpoints.yml`: its sections as `EndpointConfig`s.

`EndpointConfig` mirrors Rasa's: `type` and `url` are attributes, every other key of the section
is in `kwargs`. Every store takes one, so this module depends on no store (the factory that
builds stores from it is `store.factory`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from store.errors import TimerStoreConfigError, redact

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
