"""`SessionTimerStore`: the contract every timer store keeps.

The five methods and two helpers have exactly the signatures of Rasa's documented interface, so
a store written for Rasa loads here and the other way round. The docstrings are the contract:
the shared test suite (`tests/contract/`) checks each sentence against every store.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from store.endpoint import EndpointConfig
from store.timer import SessionTimer


class SessionTimerStore(ABC):
    """One active inactivity timer per conversation (`sender_id`).

    Contract:
    - `store_timer` replaces the conversation's timer; a store never holds two for one sender.
    - `delete_timer(sender_id, only_if_scheduled_time=t)` deletes only while the stored timer's
      `scheduled_time` equals `t` exactly, and reports whether it deleted. Among concurrent
      callers at most one gets `True` for one stored timer: that is how pods claim a timer.
    - `get_expired_timers(cutoff)` returns timers with `scheduled_time <= cutoff` and deletes
      nothing.
    - Bad arguments raise `ValueError` or `TypeError` naming the argument, before any write.
    - `close()` is synchronous because Rasa calls it both inside a running event loop and after
      the loop has ended; it must work in both places and may be called twice.
    """

    def __init__(self, endpoint_config: EndpointConfig | None = None) -> None:
        """Keep the configuration (a subclass may ignore it: nothing here or in timerlab's
        harness requires a store to keep any attribute beyond the five methods)."""
        self.endpoint_config = endpoint_config

    @abstractmethod
    def close(self) -> None:
        """Close and clean up the timer store."""

    @abstractmethod
    async def store_timer(
        self,
        sender_id: str,
        session_id: str | None,
        scheduled_time: float,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Store a session timer for the given conversation, replacing any previous one.

        Args:
            sender_id: The conversation ID.
            session_id: The current session ID, used to validate the timer
                has not been superseded when it fires.
            scheduled_time: Unix timestamp (seconds) when the timer should fire.
            metadata: Optional key-value data to attach to the timer.
        """

    @abstractmethod
    async def delete_timer(
        self,
        sender_id: str,
        only_if_scheduled_time: float | None = None,
    ) -> bool:
        """Delete the timer for the given conversation.

        Args:
            sender_id: The conversation ID.
            only_if_scheduled_time: If set, delete only when the stored timer's
                scheduled_time equals this value (for atomic multi-pod claiming).
                If None, delete unconditionally.

        Returns:
            True if a timer was found and deleted, False otherwise.
        """

    @abstractmethod
    async def get_timer(self, sender_id: str) -> SessionTimer | None:
        """Get the timer for the given conversation, or None if none exists."""

    @abstractmethod
    async def get_expired_timers(self, cutoff_time: float | None = None) -> list[SessionTimer]:
        """Return all timers that have expired.

        Args:
            cutoff_time: Unix timestamp threshold. Timers with
                scheduled_time <= cutoff_time are returned.
                Defaults to the current time if None.

        Returns:
            List of expired SessionTimer objects. Must not delete them.
        """

    @staticmethod
    def _check_time_for_expired(cutoff_time: float | None) -> float:
        """Return `cutoff_time` if set, otherwise the current wall-clock time.

        Static, as in the interface we implement: `SessionTimerStore._check_time_for_expired(t)`
        works without an instance, and `self._check_time_for_expired(t)` as well.
        """
        return time.time() if cutoff_time is None else cutoff_time

    @staticmethod
    def _filter_expired(timers: Iterable[SessionTimer], check_time: float) -> list[SessionTimer]:
        """Keep the timers with `scheduled_time <= check_time` (the boundary is inclusive)."""
        return [timer for timer in timers if timer.scheduled_time <= check_time]


async def aclose_store(store: SessionTimerStore) -> None:
    """Close any store from async code, waiting for its connections where it can.

    The documented `close()` is synchronous (Rasa also calls it after the loop has ended), so
    it can only schedule a Redis client's shutdown. The reference stores add `aclose()`, which
    awaits it; a custom store has the five documented methods only.
    """
    aclose = getattr(store, "aclose", None)
    if aclose is None:
        store.close()
    else:
        await aclose()
