"""The Lua scripts, loaded from package data and registered on a client.

Each script is the shared prelude plus its own body. redis-py's script objects call EVALSHA and
reload the script on NOSCRIPT, so a Redis restart or a failover to a replica (which has an empty
script cache) costs one extra round trip, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("store", "cancel", "delete_if", "get", "expired", "claim", "complete", "reconcile")


@cache
def script_source(name: str) -> str:
    """The full text of one script (prelude included)."""
    folder = resources.files("store.redis")
    prelude = (folder / "prelude.lua").read_text(encoding="utf-8")
    return prelude + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    """The registered scripts of one client."""

    store: Any
    cancel: Any
    delete_if: Any
    get: Any
    expired: Any
    claim: Any
    complete: Any
    reconcile: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        """Register every script on `client` (no round trip until the first call)."""
        return cls(**{name: client.register_script(script_source(name)) for name in NAMES})
