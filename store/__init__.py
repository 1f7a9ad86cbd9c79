"""timerlab's timer store library: Rasa's documented timer-store interface, and more.

    from store import SessionTimer, SessionTimerStore, InMemoryTimerStore, RedisTimerStore
    from store import EndpointConfig, create_timer_store, load_endpoint_config

`InMemorySessionTimerStore` and `RedisSessionTimerStore` are the class names in Rasa's own code;
they are aliases here so existing imports keep working.
"""

from store.base import SessionTimerStore
from store.clock import Clock, LoopClock, ManualClock, SystemClock
from store.endpoint import EndpointConfig, load_endpoint_config
from store.errors import (
    InvalidTimerType,
    InvalidTimerValue,
    StoreUnavailableError,
    TimerStoreConfigError,
)
from store.factory import create_timer_store
from store.fallback import FallbackTimerStore
from store.memory import InMemoryTimerStore
from store.redis import RedisTimerStore
from store.timer import SessionTimer

InMemorySessionTimerStore = InMemoryTimerStore
RedisSessionTimerStore = RedisTimerStore

__all__ = [
    "Clock",
    "EndpointConfig",
    "FallbackTimerStore",
    "InMemorySessionTimerStore",
    "InMemoryTimerStore",
    "InvalidTimerType",
    "InvalidTimerValue",
    "LoopClock",
    "ManualClock",
    "RedisSessionTimerStore",
    "RedisTimerStore",
    "SessionTimer",
    "SessionTimerStore",
    "StoreUnavailableError",
    "SystemClock",
    "TimerStoreConfigError",
    "create_timer_store",
    "load_endpoint_config",
]
