"""The Lua scripts, loaded from package data and registered on a client.

Each script is its own body plus the shared library parts it uses (`lib_*.lua`), and no more:
every byte is compiled on every call by some servers (and by the simulator's embedded Redis).
Keys of one bucket share a hash tag, so a script touches exactly one cluster slot. Every value
a script compares (times, versions, epochs) arrives through ARGV: no TIME, no TTLs, so the
simulator's embedded Redis stays deterministic.

redis-py's script objects call EVALSHA and reload on NOSCRIPT, so a Redis restart or a failover
to a replica (whose script cache is empty) costs one extra round trip, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

USES: dict[str, tuple[str, ...]] = {
    "store": ("meta",),
    "cancel": ("meta", "tomb"),
    "delete_if": (),
    "get": (),
    "expired": (),
    "claim": ("meta",),
    "complete": (),
    "reconcile": ("meta", "record", "tomb"),
}
"""Each script, and the library parts it needs."""


@cache
def script_source(name: str) -> str:
    """The full text of one script."""
    folder = resources.files("store.redis")
    parts = [(folder / f"lib_{part}.lua").read_text(encoding="utf-8") for part in USES[name]]
    return "\n".join([*parts, (folder / f"{name}.lua").read_text(encoding="utf-8")])


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
        return cls(**{name: client.register_script(script_source(name)) for name in USES})
