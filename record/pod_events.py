"""The rows a pod writes about the conversations it serves and about its own life.

Simulated pods (`sim.pod`) and real ones (`loadtest.pod`) both write them, and the checker
reads their fields (`harness.checker.build`), so they are defined once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from store.events import EventSink, metadata_digest


def message_received(
    record: EventSink,
    sender_id: str,
    session_id: str | None,
    timeout: float,
    scheduled_time: float,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """A message that re-arms its conversation's timer, before the write: with the time the
    write will arm, so that a write whose reply never comes (the pod died, Redis failed
    mid-call) can still be recognised when it is claimed."""
    record(
        "message",
        sender_id=sender_id,
        session_id=session_id,
        timeout=timeout,
        scheduled_time=scheduled_time,
        metadata=metadata_digest(metadata),
    )


def conversation_ended(record: EventSink, sender_id: str) -> None:
    """A message that ends its conversation (its timer is cancelled), before the write."""
    record("message", sender_id=sender_id, end=True)


def message_failed(record: EventSink, sender_id: str, error: str) -> None:
    """The user saw the message's write fail; its outcome in the store is unknown."""
    record("message", sender_id=sender_id, result="error", error=error)


def pod_started(record: EventSink, incarnation: int, delivery: str, fallback: bool) -> None:
    """A pod incarnation is serving: how it claims (`at_least_once` or `at_most_once`) and
    whether its store falls back to memory (fallback rules apply to it only if so)."""
    record("pod_start", incarnation=incarnation, delivery=delivery, fallback=fallback)
