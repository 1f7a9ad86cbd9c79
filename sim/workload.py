"""Conversations: who sends what, when, to which pod.

Conversations arrive as a Poisson process. Each has a session timeout drawn from
`timeouts`, sends a geometric number of messages with exponential think times (a think time
longer than the timeout lets the session expire between messages, as real users do; or uniform
ones in a range, as a load test's users wait), and ends
explicitly (a cancel) with probability `end_probability`.

Adversarial mode opens the race windows a broken store needs to show its bug: some messages
are sent exactly when the timer comes due (fractional timeouts), and, in racing mode, held back
until the first poll after the deadline has listed the old instance, so the re-arm lands in
the middle of that poll's claim.

Every message carries a payload a broken store can get wrong: the conversation's session id
(which changes when the conversation restarts, as a session does after it expired) and
metadata (nested, unicode, sometimes empty or absent). Payloads are drawn from a random stream
of their own, so they never shift the traffic's timing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkloadSpec:
    """The traffic of one run."""

    conversations: int = 60
    arrival_window: float = 60.0
    """Conversations start uniformly-at-random (Poisson) within this many seconds."""
    messages_mean: float = 4.0
    think_time_mean: float = 6.0
    think_time_range: tuple[float, float] | None = None
    """Uniform think times in this range instead of exponential ones with the mean above (a
    load test's users wait uniformly, and never long enough to let their session expire)."""
    end_probability: float = 0.3
    timeouts: tuple[float, ...] = (5.0, 10.0, 20.0)
    routing: str = "random"
    """"random" (any pod per message) or "sticky" (one pod per conversation)."""
    adversarial: float = 0.0
    """Share of messages sent exactly at the deadline of the conversation's timer."""
    racing: bool = False
    """Pods poll in lock step, and deadline messages land inside the claiming poll."""
    limit: int | None = None
    """Keep only the first `limit` conversations of the draw (shrinking a failing run)."""
    session_restart: float = 0.2
    """Chance that a message starts a new session of its conversation (a new session id)."""

    def longest_timeout(self) -> float:
        return max(self.timeouts)

    def think_time(self, rng: random.Random) -> float:
        if self.think_time_range is not None:
            return rng.uniform(*self.think_time_range)
        return rng.expovariate(1.0 / self.think_time_mean)


@dataclass(frozen=True)
class Message:
    """One step of a conversation: wait `delay`, then send (or end, when `end` is set).

    `at_deadline`: the delay is the timer's timeout, so the message races the expiry.
    `session_id` and `metadata` are what the message arms its timer with.
    """

    delay: float
    end: bool = False
    at_deadline: bool = False
    session_id: str = ""
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Conversation:
    sender_id: str
    start: float
    timeout: float
    steps: tuple[Message, ...]


def conversations(
    spec: WorkloadSpec, rng: random.Random, payloads: random.Random | None
) -> list[Conversation]:
    """Draw every conversation of a run up front, so pods and faults never shift the draw.

    `rng` draws the traffic, `payloads` the session ids and metadata. Without `payloads`
    (capacity mode, which needs only the timing) messages carry none, and the traffic is the
    same: payloads come from a stream of their own.
    """
    rate = spec.conversations / spec.arrival_window if spec.arrival_window else 0.0
    start = 0.0
    result = []
    for index in range(spec.conversations):
        start = start + rng.expovariate(rate) if rate else 0.0
        timeout = rng.choice(spec.timeouts)
        if spec.adversarial:
            timeout += round(rng.random(), 6)  # fractional deadlines
        count = 1
        while rng.random() > 1.0 / spec.messages_mean:
            count += 1
        steps = [Message(0.0)]
        for _ in range(count - 1):
            if rng.random() < spec.adversarial:
                steps.append(Message(timeout, at_deadline=True))  # races the last one's expiry
            else:
                steps.append(Message(spec.think_time(rng)))
        if rng.random() < spec.end_probability:
            steps.append(Message(spec.think_time(rng), end=True))
        if payloads is not None:
            steps = list(_payloads(steps, index, spec, payloads))
        result.append(Conversation(f"user-{index:05d}", start, timeout, tuple(steps)))
    return result if spec.limit is None else result[: spec.limit]


def _payloads(
    steps: list[Message], index: int, spec: WorkloadSpec, rng: random.Random
) -> tuple[Message, ...]:
    """Give each message its session id and metadata."""
    session = 0
    out = []
    for turn, step in enumerate(steps):
        if step.end:
            out.append(step)
            continue
        if turn and rng.random() < spec.session_restart:
            session += 1
        session_id = f"session-{index:05d}" + (f".{session}" if session else "")
        out.append(
            Message(
                step.delay, at_deadline=step.at_deadline, session_id=session_id,
                metadata=_metadata(rng, turn),
            )
        )  # fmt: skip
    return tuple(out)


_CHANNELS = ("web", "slack", "whatsapp", "téléphone", "微信", "📱 app")
_NAMES = ("Zoë", "Søren", "Ana", "李雷", "Ωmega", "😀", 'O\'Brien "Bob"')


def _metadata(rng: random.Random, turn: int) -> dict[str, Any] | None:
    """Metadata as a channel sends it: often nested and unicode, sometimes empty or absent."""
    kind = rng.random()
    if kind < 0.1:
        return None
    if kind < 0.2:
        return {}
    return {
        "channel": rng.choice(_CHANNELS),
        "turn": turn,
        "score": round(rng.random(), 6),
        "user": {
            "name": rng.choice(_NAMES),
            "tags": [rng.choice(("vip", "new", "ünïcode", "")) for _ in range(rng.randrange(4))],
        },
        "flags": [rng.random() < 0.5, None],
    }
