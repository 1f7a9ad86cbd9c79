"""The event hook through which stores and the service report what they did.

Logs are for operators; events are for the harness. A pod passes a sink that writes the history
file, the simulator one that records with the true simulated time. Both receive the same kinds
and fields (see `record.history` for the schema), so the checker needs no special cases.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol


class EventSink(Protocol):
    """Receives one event: a kind such as "schedule" or "fallback_activated", and its fields."""

    def __call__(self, kind: str, /, **fields: Any) -> None: ...


def null_sink(kind: str, /, **fields: Any) -> None:
    """The default sink: drops events (a production pod without a history file)."""


def metadata_digest(metadata: Mapping[str, Any] | None) -> str:
    """A short, stable fingerprint of timer metadata, so a history can show that a fire carried
    exactly what its timer was armed with without storing the metadata itself (it may be
    private). Equal JSON values give equal digests; `None` and `{}` are the same (a
    `SessionTimer` stores `{}` for `None`)."""
    text = json.dumps(metadata or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
