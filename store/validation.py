"""Argument checks shared by every reference store.

They run before any I/O, so a bad call raises a precise error and writes nothing. The limits
are deliberately generous for real conversations and tight enough that one bad caller cannot
bloat a shared Redis.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from store.errors import InvalidTimerType, InvalidTimerValue

MAX_ID_BYTES = 4096
"""Longest sender or session id, in UTF-8 bytes (channel ids are far shorter)."""

MAX_METADATA_BYTES = 64 * 1024
"""Largest metadata, as compact JSON."""

MAX_METADATA_DEPTH = 32
"""Deepest nesting of metadata containers."""

MAX_SCHEDULED_TIME = 253402300799.0
"""9999-12-31T23:59:59Z, the last second `datetime` can represent."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(field: str, value: object, *, optional: bool = False) -> str | None:
    """Return `value` if it is a usable conversation or session id, else raise naming `field`.

    Braces, colons and characters outside the BMP are fine (the Redis key scheme never embeds
    ids in key names); control characters and unpaired surrogates are not, because they cannot
    travel through every channel and log unharmed.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidTimerType(field, f"must be a string, not {type(value).__name__}")
    if not value and not optional:
        raise InvalidTimerValue(field, "must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTimerValue(field, "contains an unpaired surrogate") from None
    if size > MAX_ID_BYTES:
        raise InvalidTimerValue(field, f"is {size} bytes long; the limit is {MAX_ID_BYTES}")
    if _CONTROL.search(value):
        raise InvalidTimerValue(field, "contains a control character")
    return value


def check_time(field: str, value: object) -> float:
    """Return `value` as a float Unix time, refusing NaN, infinities, negatives and year > 9999."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTimerType(field, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise InvalidTimerValue(field, f"must be finite, not {number}")
    if number < 0:
        raise InvalidTimerValue(field, f"must not be negative ({number!r})")
    if number > MAX_SCHEDULED_TIME:
        raise InvalidTimerValue(field, f"{number!r} is after the year 9999")
    return number


def encode_metadata(value: object) -> str:
    """Return metadata as compact JSON, or raise naming `metadata`.

    Encoding once, up front, is what guarantees that a store never writes half a timer.
    """
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidTimerType("metadata", f"must be a dict, not {type(value).__name__}")
    _check_depth(value, 1)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidTimerType("metadata", f"is not JSON-serialisable: {exc}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTimerValue("metadata", "contains an unpaired surrogate") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidTimerValue(
            "metadata", f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
        )
    return text


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise InvalidTimerValue("metadata", f"is nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidTimerType("metadata", f"keys must be strings, not {key!r}")
            _check_depth(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_depth(item, depth + 1)


def check_limit(value: object) -> int:
    """A batch size: an int of 0 or more (0 claims nothing)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTimerType("limit", f"must be an integer, not {type(value).__name__}")
    if value < 0:
        raise InvalidTimerValue("limit", f"must not be negative ({value})")
    return value
