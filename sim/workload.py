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
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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
    """

    delay: float
    end: bool = False
    at_deadline: bool = False


@dataclass(frozen=True)
class Conversation:
    sender_id: str
    session_id: str
    start: float
    timeout: float
    steps: tuple[Message, ...]


def conversations(spec: WorkloadSpec, rng: random.Random) -> list[Conversation]:
    """Draw every conversation of a run up front, so pods and faults never shift the draw."""
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
        result.append(
            Conversation(f"user-{index:05d}", f"session-{index:05d}", start, timeout, tuple(steps))
        )
    return result if spec.limit is None else result[: spec.limit]
