"""The Redis timer store: standalone, cluster and sentinel deployments."""

from store.redis.settings import RedisSettings
from store.redis.store import RedisTimerStore

__all__ = ["RedisSettings", "RedisTimerStore"]
