"""Where timers live in Redis.

Each bucket is a group of keys that share one hash tag, `{<prefix>:timer:<n>}` (or
`{timer:<n>}`), so every script touches one cluster slot, and a cluster spreads the buckets over
its masters. A sender always maps to the same bucket (CRC-32 of its UTF-8 bytes), so all pods of
a deployment must use the same `buckets` setting. Sender ids are never part of a key name, so
braces or colons in an id cannot break the hash-tag routing.

Per bucket:
- `due`    sorted set: sender -> scheduled_time (the score keeps the float exactly)
- `rec`    hash: sender -> "<version>|<json [session_id, metadata?]>"
- `meta`   hash: seq (version counter), epoch (identity of this data), tfloor (tombstone floor)
- `tomb`   sorted set: sender -> version of its last cancel
- `lease`  sorted set: fire_id -> lease expiry (pod clock)
- `leased` hash: fire_id -> claimed timer
- `merged` sorted set: instance ids merged back after an outage -> their version (the newest
  `tombstone_limit`), so a merge retried after a lost reply never arms one twice
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class BucketKeys:
    """The key names of one bucket."""

    tag: str

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    @property
    def rec(self) -> str:
        return f"{self.tag}:rec"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @property
    def tomb(self) -> str:
        return f"{self.tag}:tomb"

    @property
    def lease(self) -> str:
        return f"{self.tag}:lease"

    @property
    def leased(self) -> str:
        return f"{self.tag}:leased"

    @property
    def merged(self) -> str:
        return f"{self.tag}:merged"

    def all(self) -> tuple[str, ...]:
        """Every key of the bucket (for tests and cleanup)."""
        return (self.due, self.rec, self.meta, self.tomb, self.lease, self.leased, self.merged)


@dataclass(frozen=True)
class KeyScheme:
    """Maps senders to buckets and buckets to key names."""

    key_prefix: str | None
    buckets: int

    @cached_property
    def _all(self) -> tuple[BucketKeys, ...]:
        base = f"{self.key_prefix}:timer" if self.key_prefix else "timer"
        return tuple(BucketKeys(f"{{{base}:{n}}}") for n in range(self.buckets))

    def bucket_of(self, sender_id: str) -> int:
        """The bucket that holds `sender_id`'s timer."""
        if self.buckets == 1:
            return 0
        return zlib.crc32(sender_id.encode("utf-8")) % self.buckets

    def keys(self, bucket: int) -> BucketKeys:
        """Key names of `bucket`."""
        return self._all[bucket]

    def all_buckets(self) -> tuple[BucketKeys, ...]:
        """Key names of every bucket, in bucket order."""
        return self._all
