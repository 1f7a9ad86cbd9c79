"""Encoding of the values the Lua scripts store, kept small because it is paid per timer.

A record is `"<version>|<instance>|" + json([session_id])` (or `json([session_id, metadata])`):
the sender is the hash field and the scheduled time is the sorted-set score, so neither is
stored twice. The instance id is a random 64-bit id chosen by the writer: it names this write
(and is its fire id) even if Redis loses data and hands out a version number twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from store.timer import SessionTimer


def encode_body(instance: str, session_id: str | None, metadata_json: str) -> str:
    """The part of a record the client writes (the script prepends the version)."""
    session = json.dumps(session_id, ensure_ascii=False)
    if metadata_json == "{}":
        return f"{instance}|[{session}]"
    return f"{instance}|[{session},{metadata_json}]"


def decode_record(sender_id: str, scheduled_time: float, record: str) -> tuple[int, SessionTimer]:
    """`(version, timer)` from a stored record."""
    version, _, body = record.split("|", 2)
    fields = json.loads(body)
    metadata = fields[1] if len(fields) > 1 else {}
    return int(version), SessionTimer(sender_id, fields[0], scheduled_time, metadata)


@dataclass(frozen=True)
class LeaseEntry:
    """A claimed timer as `claim.lua` returns it."""

    attempt: int
    version: int
    timer: SessionTimer


def decode_lease_entry(entry: str) -> LeaseEntry:
    """Parse `"attempt|scheduled_time|len(sender)|sender" + record`."""
    attempt, score, length, rest = entry.split("|", 3)
    size = int(length)
    sender, record = _split_chars(rest, size)
    version, timer = decode_record(sender, float(score), record)
    return LeaseEntry(int(attempt), version, timer)


def _split_chars(text: str, byte_length: int) -> tuple[str, str]:
    """Split after `byte_length` UTF-8 bytes (Lua's `#` counts bytes, Python counts chars)."""
    raw = text.encode("utf-8")
    return raw[:byte_length].decode("utf-8"), raw[byte_length:].decode("utf-8")
