"""Typed readers for `timer_store` settings, and the settings of the timer service.

Each reader names the key in its error, so a bad `endpoints.yml` gets one precise line. The
same readers serve the Redis connection settings (`store.redis.settings`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from store.errors import TimerStoreConfigError

Delivery = Literal["at_least_once", "at_most_once"]


def read_number(
    values: Mapping[str, Any],
    key: str,
    default: float,
    *,
    minimum: float = 0.0,
    strict_minimum: bool = True,
) -> float:
    """A finite number above `minimum` (or at least it, when not strict)."""
    raw = values.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise TimerStoreConfigError(key, f"must be a number, not {type(raw).__name__}")
    try:
        number = float(raw)
    except ValueError:
        raise TimerStoreConfigError(key, f"must be a number, not {raw!r}") from None
    if not math.isfinite(number):
        raise TimerStoreConfigError(key, f"must be finite, not {raw!r}")
    too_small = number <= minimum if strict_minimum else number < minimum
    if too_small:
        relation = "greater than" if strict_minimum else "at least"
        raise TimerStoreConfigError(key, f"must be {relation} {minimum:g}, not {raw!r}")
    return number


def read_int(
    values: Mapping[str, Any], key: str, default: int, *, minimum: int, maximum: int
) -> int:
    """An integer in `[minimum, maximum]` (strings of digits are accepted, as YAML may quote)."""
    raw = values.get(key, default)
    if isinstance(raw, bool):
        raise TimerStoreConfigError(key, f"must be an integer, not {raw!r}")
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise TimerStoreConfigError(key, f"must be an integer, not {raw!r}") from None
    if isinstance(raw, float) and raw != number:
        raise TimerStoreConfigError(key, f"must be an integer, not {raw!r}")
    if not minimum <= number <= maximum:
        raise TimerStoreConfigError(key, f"must be between {minimum} and {maximum}, not {raw!r}")
    return number


def read_bool(values: Mapping[str, Any], key: str, default: bool) -> bool:
    """A YAML boolean; the strings true/false/yes/no are accepted too."""
    raw = values.get(key, default)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"true", "yes", "1", "false", "no", "0"}:
        return raw.strip().lower() in {"true", "yes", "1"}
    raise TimerStoreConfigError(key, f"must be true or false, not {raw!r}")


def read_str(values: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    """A string, or the default when absent or null."""
    raw = values.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise TimerStoreConfigError(key, f"must be a string, not {type(raw).__name__}")
    return str(raw)


def read_choice(values: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices`."""
    raw = read_str(values, key, default)
    if raw not in choices:
        raise TimerStoreConfigError(key, f"must be one of {', '.join(choices)}; got {raw!r}")
    return raw


@dataclass(frozen=True)
class ServiceSettings:
    """How a pod runs its timers; read from the same `timer_store` section for every store type.

    Defaults follow Rasa where Rasa has the setting (`poll_interval`), and are otherwise chosen
    so that a lost pod or a long outage costs seconds, not minutes.
    """

    poll_interval: float = 1.0
    poll_jitter: float = 0.1
    """Each sleep is `poll_interval * (1 ± poll_jitter)`, so pods do not poll in lock step."""
    delivery: Delivery = "at_least_once"
    lease_seconds: float = 30.0
    """How long a claim is held before another pod may re-fire it (at-least-once)."""
    fire_timeout: float = 10.0
    """A callback running longer is recorded as a timeout (and re-fired after the lease)."""
    max_fire_attempts: int = 3
    batch_size: int = 500
    """Most timers one poll claims."""
    recovery_rate: float = 1000.0
    """Fires per second while working off a backlog, so an outage ends without a stampede."""
    skip_older_than: float | None = None
    """Missed-timer policy: None fires every missed timer; a number skips older ones."""
    fallback: bool = True
    probe_interval: float = 1.0
    """How often the fallback checks whether the primary is back."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServiceSettings:
        """Read the service keys of a `timer_store` section (other keys are ignored here)."""
        delivery = read_choice(
            values, "delivery", "at_least_once", ("at_least_once", "at_most_once")
        )
        fire_timeout = read_number(values, "fire_timeout", cls.fire_timeout)
        lease = read_number(values, "lease_seconds", cls.lease_seconds)
        if lease <= fire_timeout:
            raise TimerStoreConfigError(
                "lease_seconds",
                f"must exceed fire_timeout ({fire_timeout:g} s), or every slow fire is repeated",
            )
        return cls(
            poll_interval=read_number(values, "poll_interval", cls.poll_interval),
            poll_jitter=_read_fraction(values, "poll_jitter", cls.poll_jitter),
            delivery="at_most_once" if delivery == "at_most_once" else "at_least_once",
            lease_seconds=lease,
            fire_timeout=fire_timeout,
            max_fire_attempts=read_int(
                values, "max_fire_attempts", cls.max_fire_attempts, minimum=1, maximum=100
            ),
            batch_size=read_int(values, "batch_size", cls.batch_size, minimum=1, maximum=100_000),
            recovery_rate=read_number(values, "recovery_rate", cls.recovery_rate),
            skip_older_than=_read_missed_timers(values),
            fallback=read_bool(values, "fallback", cls.fallback),
            probe_interval=read_number(values, "probe_interval", cls.probe_interval),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The settings as `timer_store` section keys (`from_mapping` reads them back)."""
        values = dataclasses.asdict(self)
        skip = values.pop("skip_older_than")
        values["missed_timers"] = "fire" if skip is None else {"skip_older_than": skip}
        return values


def _read_fraction(values: Mapping[str, Any], key: str, default: float) -> float:
    number = read_number(values, key, default, minimum=0.0, strict_minimum=False)
    if number >= 1:
        raise TimerStoreConfigError(key, f"must be below 1, not {number:g}")
    return number


def _read_missed_timers(values: Mapping[str, Any]) -> float | None:
    """`missed_timers: fire` (default) or `missed_timers: {skip_older_than: SECONDS}`."""
    raw = values.get("missed_timers", "fire")
    if raw == "fire":
        return None
    if isinstance(raw, Mapping) and set(raw) == {"skip_older_than"}:
        return read_number(raw, "skip_older_than", 0.0)
    raise TimerStoreConfigError(
        "missed_timers", f"must be 'fire' or {{skip_older_than: SECONDS}}, not {raw!r}"
    )
