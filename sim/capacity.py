"""Capacity mode: the same traffic, pods and service times as the full simulator, with the
store's Redis state as a model, fast enough for fleets.

The full simulator (`sim/world.py`) runs the shipped store, service and runner on an event
loop whose clock is simulated time, and the real Lua on the embedded Redis. That is what the
correctness gate needs, and it costs real CPU per simulated call: a 40,000-conversation
minute takes minutes. A capacity planner needs lateness and load at 100,000 conversations for
an hour, and the quantities that decide them are few: when each message arrives at which pod,
how long each piece of work holds a pod's CPU or Redis's one thread (`sim/costs.py`), and
which timers are due at each claim.

So this mode is a plain discrete-event simulation (a heap of timed steps) that follows the
reference stack's observable protocol, step for step:

- a message waits for its pod's CPU (`pod_per_message`), arms `now + timeout`, and the write
  (`pod_per_call` to send, a one-way latency, Redis's queue, the way back, the reply parsed)
  replaces the conversation's timer when it reaches Redis; an end cancels it likewise;
- each pod polls as `TimerRunner` does (its first poll at its phase, then `PollPacer`'s
  delays, the backlog rule included): one claim of at most `batch_size` timers due at the
  poll's start, oldest first, leased (hidden) until released; callbacks run at most
  `FIRE_CONCURRENCY` at a time, each holding the CPU for `pod_per_fire` and lasting
  `fire_duration`; then one `complete` releases the batch (a timer re-armed meanwhile stays);
- Redis replies cost `redis_per_command` plus `redis_per_reply_byte` per byte, a claim
  reply's bytes estimated per timer (`CLAIM_ENTRY_BYTES`).

What it leaves out: faults (capacity runs have none), the fallback, per-call Python jitter.
`tests/sim/test_capacity.py` runs both modes on small configurations and bounds the difference
in fires, lateness and Redis calls; `timerlab sweep --full` runs the full simulator instead.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim.costs import Queue, ServiceCosts
from sim.pod import seeded
from sim.spec import RunSpec
from sim.workload import Conversation, conversations
from store.pacing import PollPacer
from store.service import FIRE_CONCURRENCY

CLAIM_ENTRY_BYTES = 90 + 123
"""Bytes of one claimed timer in `claim.lua`'s reply: fire id, attempt, scheduled time, sender
and the record's version and instance (85-95 bytes on a 500-timer claim's reply), plus the
session id and metadata JSON of the workload's messages (123 bytes on average)."""
SMALL_REPLY = 24
"""Bytes of a write's, a cancel's or a complete's reply (`version|lost|epoch` and the like)."""
NO_COSTS = ServiceCosts(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, source="none")


@dataclass
class _Timer:
    """A conversation's armed timer as Redis holds it."""

    scheduled: float
    version: int
    leased: bool = False
    attempts: int = 0


@dataclass
class _Pod:
    index: int
    cpu: Queue
    link: random.Random
    pacer: PollPacer
    claims: list[tuple[str, _Timer]] = field(default_factory=list)
    """The batch in flight: claimed, fired or waiting to fire."""
    finished: list[tuple[str, _Timer]] = field(default_factory=list)
    """Its callbacks that ended in time: `complete` releases these; a callback that ran past
    `fire_timeout` keeps its lease, and the timer is claimed again when the lease lapses."""
    waiting: int = 0
    running: int = 0


@dataclass(frozen=True)
class CapacityResult:
    """What a sweep point needs: the figures `harness/sweep.py` puts in `capacity.csv`."""

    duration: float
    fires: int
    lateness: list[float]
    redis_calls: int
    redis_busy: float
    pod_cpu_busy: list[float]
    peak_pending: int

    def percentile(self, share: float) -> float:
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


class CapacityModel:
    """One run of `spec` in capacity mode (see the module docstring)."""

    def __init__(self, spec: RunSpec) -> None:
        if spec.plan.faults:
            raise ValueError("capacity mode models steady runs; run faults in the full simulator")
        self.spec = spec
        self.costs = spec.costs or NO_COSTS
        self.settings = spec.settings
        self.redis = Queue()
        self.pods = [
            _Pod(
                index,
                Queue(),
                seeded(spec.seed, f"link:{index}"),
                PollPacer(spec.settings, seeded(spec.seed, f"pacer:{index}")),
            )
            for index in range(spec.pods)
        ]
        self._route = seeded(spec.seed, "routing")
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.now = 0.0
        self.timers: dict[str, _Timer] = {}
        self._due: list[tuple[float, int, str]] = []
        self._version = 0
        self.fires = 0
        self.lateness: list[float] = []
        self.calls = 0
        self.peak_pending = 0

    # -- the event heap ---------------------------------------------------------------------

    def _at(self, when: float, step: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, step, args))

    def run(self) -> CapacityResult:
        traffic = conversations(self.spec.workload, seeded(self.spec.seed, "workload"), None)
        last = 0.0
        for conversation in traffic:
            self._at(conversation.start, self._message, conversation, 0)
            last = max(last, conversation.start + sum(step.delay for step in conversation.steps))
        for pod in self.pods:
            phase = 0.0
            if self.spec.poll_phase_spread > 0:
                phase = seeded(self.spec.seed, f"phase:{pod.index}").uniform(
                    0.0, self.spec.poll_phase_spread
                )
            self._at(phase, self._poll, pod)
        duration = self.spec.duration(last)
        while self._events and self._events[0][0] <= duration:
            self.now, _, step, args = heapq.heappop(self._events)
            step(*args)
        return CapacityResult(
            duration=duration,
            fires=self.fires,
            lateness=self.lateness,
            redis_calls=self.calls,
            redis_busy=self.redis.busy,
            pod_cpu_busy=[pod.cpu.busy for pod in self.pods],
            peak_pending=self.peak_pending,
        )

    # -- one Redis call ---------------------------------------------------------------------

    def _call(
        self,
        pod: _Pod,
        apply: Callable[[], int],
        then: Callable[..., None] | None = None,
        *args: Any,
    ) -> None:
        """From now, on `pod`: the CPU sends the request, it travels, Redis applies it (on
        arrival: commands take effect in arrival order) and queues its reply, which travels
        back and is parsed; then `then(*args)`."""
        self.calls += 1
        sent = pod.cpu.take(self.now, self.costs.pod_per_call)
        self._at(sent + self._one_way(pod), self._arrive, pod, apply, then, args)

    def _arrive(
        self,
        pod: _Pod,
        apply: Callable[[], int],
        then: Callable[..., None] | None,
        args: tuple[Any, ...],
    ) -> None:
        size = apply()
        made = self.redis.take(
            self.now, self.costs.redis_per_command + self.costs.redis_per_reply_byte * size
        )
        self._at(made + self._one_way(pod), self._reply, pod, size, then, args)

    def _reply(
        self, pod: _Pod, size: int, then: Callable[..., None] | None, args: tuple[Any, ...]
    ) -> None:
        parsed = pod.cpu.take(self.now, self.costs.pod_per_reply_byte * size)
        if then is not None:
            self._at(parsed, then, *args)

    def _one_way(self, pod: _Pod) -> float:
        spread = self.spec.latency * self.spec.latency_jitter
        return (
            self.spec.latency + pod.link.uniform(-spread, spread) if spread else self.spec.latency
        )

    # -- traffic ----------------------------------------------------------------------------

    def _message(self, conversation: Conversation, turn: int, sticky: _Pod | None = None) -> None:
        """A conversation's step reaches a pod (routed as `World._route` routes it)."""
        if sticky is None:
            sticky = self.pods[self._route.randrange(len(self.pods))]
        pod = sticky
        if self.spec.workload.routing != "sticky":
            pod = self.pods[self._route.randrange(len(self.pods))]
        handled = pod.cpu.take(self.now, self.costs.pod_per_message)
        self._at(handled, self._handle, pod, conversation, turn)
        if turn + 1 < len(conversation.steps):
            delay = conversation.steps[turn + 1].delay
            self._at(self.now + delay, self._message, conversation, turn + 1, sticky)

    def _handle(self, pod: _Pod, conversation: Conversation, turn: int) -> None:
        step = conversation.steps[turn]
        sender = conversation.sender_id
        if step.end:
            self._call(pod, lambda: self._cancel(sender))
            return
        scheduled = self.now + conversation.timeout
        self._call(pod, lambda: self._arm(sender, scheduled))

    def _arm(self, sender: str, scheduled: float) -> int:
        self._version += 1
        self.timers[sender] = _Timer(scheduled, self._version)
        heapq.heappush(self._due, (scheduled, self._version, sender))
        self.peak_pending = max(self.peak_pending, len(self.timers))
        return SMALL_REPLY

    def _cancel(self, sender: str) -> int:
        self.timers.pop(sender, None)
        return SMALL_REPLY

    # -- polls ------------------------------------------------------------------------------

    def _poll(self, pod: _Pod) -> None:
        cutoff = self.now
        self._call(pod, lambda: self._claim(pod, cutoff), self._fire_batch, pod, cutoff)

    def _claim(self, pod: _Pod, cutoff: float) -> int:
        """`claim.lua`: the oldest timers due by `cutoff`, at most a batch, leased."""
        pod.claims = []
        size = 0
        while (
            self._due and self._due[0][0] <= cutoff and len(pod.claims) < self.settings.batch_size
        ):
            _, version, sender = heapq.heappop(self._due)
            timer = self.timers.get(sender)
            if timer is None or timer.version != version or timer.leased:
                continue  # re-armed, cancelled or claimed since this entry was pushed
            timer.leased = True
            pod.claims.append((sender, timer))
            size += CLAIM_ENTRY_BYTES
            self._at(cutoff + self.settings.lease_seconds, self._lapse, sender, timer)
        return size + SMALL_REPLY

    def _lapse(self, sender: str, timer: _Timer) -> None:
        """A lease not released in time lapses: the timer is due again (claimed first, being
        the oldest)."""
        if self.timers.get(sender) is timer and timer.leased:
            timer.leased = False
            heapq.heappush(self._due, (timer.scheduled, timer.version, sender))

    def _remaining(self, cutoff: float) -> bool:
        """Whether timers due by `cutoff` are still unclaimed (the backlog)."""
        while self._due:
            scheduled, version, sender = self._due[0]
            timer = self.timers.get(sender)
            if timer is not None and timer.version == version and not timer.leased:
                return scheduled <= cutoff
            heapq.heappop(self._due)
        return False

    def _fire_batch(self, pod: _Pod, cutoff: float) -> None:
        pod.waiting = len(pod.claims)
        pod.running = 0
        pod.finished = []
        if not pod.claims:
            self._poll_done(pod, cutoff)
            return
        for _ in range(min(FIRE_CONCURRENCY, pod.waiting)):
            self._fire_start(pod, cutoff)

    def _fire_start(self, pod: _Pod, cutoff: float) -> None:
        """A callback takes one of the poll's `FIRE_CONCURRENCY` slots. Lateness counts its
        timer's first attempt, as the checker does; one that cannot end within
        `fire_timeout` (the CPU's queue is that long) is cut off there, as `wait_for` does."""
        claim = pod.claims[len(pod.claims) - pod.waiting]
        timer = claim[1]
        pod.waiting -= 1
        pod.running += 1
        timer.attempts += 1
        if timer.attempts == 1:
            self.lateness.append(self.now - timer.scheduled)
        done = pod.cpu.take(self.now, self.costs.pod_per_fire) + self.spec.fire_duration
        deadline = self.now + self.settings.fire_timeout
        if done <= deadline:
            pod.finished.append(claim)
            self.fires += 1
        self._at(min(done, deadline), self._fire_done, pod, cutoff)

    def _fire_done(self, pod: _Pod, cutoff: float) -> None:
        pod.running -= 1
        if pod.waiting:
            self._fire_start(pod, cutoff)
        elif not pod.running:
            if not pod.finished:
                self._poll_done(pod, cutoff)
                return
            finished = pod.finished
            self._call(pod, lambda: self._complete(finished), self._poll_done, pod, cutoff)

    def _complete(self, claims: list[tuple[str, _Timer]]) -> int:
        """`complete.lua`: release the batch; a timer re-armed meanwhile is a new one."""
        for sender, timer in claims:
            if self.timers.get(sender) is timer:
                del self.timers[sender]
        return SMALL_REPLY

    def _poll_done(self, pod: _Pod, cutoff: float) -> None:
        fired = len(pod.claims)
        backlog = fired >= self.settings.batch_size and self._remaining(cutoff)
        delay = pod.pacer.backlog_delay(fired) if backlog else pod.pacer.interval()
        self._at(self.now + delay, self._poll, pod)


def run_capacity(spec: RunSpec) -> CapacityResult:
    """Simulate `spec` in capacity mode."""
    return CapacityModel(spec).run()
