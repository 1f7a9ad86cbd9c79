"""The exceptions a timer store raises on purpose.

Every one names what was wrong (`field` or `key`), so callers and the CLI can print one precise
line instead of a traceback.
"""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^@/\s]*@")


def redact(text: str) -> str:
    """`text` with the credentials of any URL in it masked (`redis://user:pw@h` -> `redis://***@h`)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)


class InvalidTimerValue(ValueError):
    """An argument of a store call has the right type but a value the store refuses."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class InvalidTimerType(TypeError):
    """An argument of a store call has the wrong type."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class TimerStoreConfigError(ValueError):
    """The `timer_store` configuration is invalid; `key` names the offending setting."""

    def __init__(self, key: str, problem: str, *, section: str | None = "timer_store") -> None:
        where = f"{section}.{key}" if section else key
        super().__init__(redact(f"{where}: {problem}"))
        self.key = key


class StoreUnavailableError(ConnectionError):
    """The backing service could not be reached or did not answer in time.

    Stores raise this (instead of their client library's errors) for every failure that means
    "try elsewhere", so `FallbackTimerStore` can react without knowing the backend.
    """
