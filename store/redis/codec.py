"""Encoding of the values the Lua scripts store, kept small because it is paid per timer.

A record is `<version>|<instance>|<session>\x1f<metadata>`: the sender is the hash field and
the scheduled time is the sorted-set score, so neither is stored twice. `<session>` is `s`
plus the session id, or `-` for none; `<metadata>` is compact JSON, or nothing when empty.
The unit separator cannot occur in an id (ids refuse control characters) nor in JSON (which
escapes them). The instance id is chosen by the writer: it names this write (and is its fire
id) even if Redis loses data and hands out a version number twice.

Every byte counts: with a 36-character session id and a little metadata a record stays within
jemalloc's 80-byte size class, where a JSON array would spill into the 96-byte one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from store.timer import SessionTimer

SEPARATOR = "\x1f"


def encode_body(instance: str, session_id: str | None, metadata_json: str) -> str:
    """The part of a record the client writes (the script prepends the version)."""
    session = "-" if session_id is None else f"s{session_id}"
    metadata = "" if metadata_json == "{}" else metadata_json
    return f"{instance}|{session}{SEPARATOR}{metadata}"


def decode_record(sender_id: str, scheduled_time: float, record: str) -> tuple[int, SessionTimer]:
    """`(version, timer)` from a stored record."""
    version, _, body = record.split("|", 2)
    session, _, metadata = body.partition(SEPARATOR)
    return int(version), SessionTimer(
        sender_id,
        None if session == "-" else session[1:],
        scheduled_time,
        json.loads(metadata) if metadata else {},
    )


def decode_expired(reply: str) -> list[SessionTimer]:
    """The timers of one `expired.lua` reply (a line per timer: sender, time, record).

    This is the hot end of a poll after an outage, thousands of timers at once, so it does
    per timer only what it must: split the line, and parse every metadata object with ONE
    `json.loads` of a JSON array joined from them (a call per record cost more than the rest
    together). The data is Redis's own, written by `store.lua` after validation, so the
    timers are built without `SessionTimer.__init__`'s four frozen-attribute sets.
    """
    if not reply:
        return []
    senders: list[str] = []
    times: list[float] = []
    sessions: list[str | None] = []
    metadata: list[str] = []
    for line in reply.split("\n"):
        sender, score, record = line.split("\t", 2)
        session, _, meta = record.split("|", 2)[2].partition(SEPARATOR)
        senders.append(sender)
        times.append(float(score))
        sessions.append(None if session == "-" else session[1:])
        metadata.append(meta or "{}")
    parsed = json.loads("[" + ",".join(metadata) + "]")
    timers = []
    make = object.__new__
    for sender, when, session_id, meta in zip(senders, times, sessions, parsed, strict=True):
        timer = make(SessionTimer)
        timer.__dict__.update(
            sender_id=sender, session_id=session_id, scheduled_time=when, metadata=meta
        )
        timers.append(timer)
    return timers


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
