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


class StoreContractError(TypeError):
    """A store broke the documented interface: it returned the wrong type, or raised something
    other than a connectivity error for a valid call. `method` names the call."""

    def __init__(self, method: str, problem: str) -> None:
        super().__init__(f"{method}: {problem}")
        self.method = method


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "the backend could not be reached or did not answer in time".

    Connectivity failures of any store: ours raise `StoreUnavailableError`; a custom store on
    redis-py raises redis-py's own connection and timeout errors, which are not the builtin
    ones; one on sockets raises `OSError` or `TimeoutError`.
    """
    import redis.exceptions as rexc

    return isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | OSError
        | rexc.ConnectionError
        | rexc.TimeoutError
        | rexc.BusyLoadingError
        | rexc.ClusterDownError
        | rexc.TryAgainError
        | rexc.ReadOnlyError
        | rexc.MasterDownError,
    )
