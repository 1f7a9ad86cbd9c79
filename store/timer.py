"""`SessionTimer`: the value a timer store keeps for one conversation.

The four fields and `create_timer` are exactly those of Rasa's documented interface, so stores
written against Rasa keep working. The dict round trip is lossless: `scheduled_time` stays the
same float bit for bit, and metadata comes back equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SessionTimer:
    """One armed inactivity timer.

    Frozen, so a timer handed out by a store cannot be changed behind the store's back.
    """

    sender_id: str
    session_id: str | None
    scheduled_time: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create_timer(
        cls,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> SessionTimer:
        """Build a timer from the arguments of `store_timer` (metadata `None` becomes `{}`)."""
        return cls(
            sender_id=sender_id,
            session_id=session_id,
            scheduled_time=float(scheduled_time),
            metadata=dict(metadata) if metadata else {},
        )

    def to_dict(self) -> dict[str, Any]:
        """The timer as plain data (JSON-ready)."""
        return {
            "sender_id": self.sender_id,
            "session_id": self.session_id,
            "scheduled_time": self.scheduled_time,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionTimer:
        """Inverse of `to_dict`."""
        return cls.create_timer(
            data["sender_id"], data.get("session_id"), data["scheduled_time"], data.get("metadata")
        )
