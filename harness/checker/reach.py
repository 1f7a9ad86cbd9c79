"""Reachability: when no healthy pod could claim a timer, so its lateness is excused.

A pod cut off from Redis claims again only once Redis is back, it has merged its outage writes,
and its hold-back has passed. How long the merge may take is the deactivation bound, so these
questions take it as a parameter: `Reach(model, recovery)`. The bounds are derived first
(`bounds.py`, with the merge not counted: `Reach(model, 0.0)`), then the rules ask with the
bound; no answer depends on the order in which rules run.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checker.model import REACH_FAULTS, Instance, Model
from harness.checker.spans import Span, intersect, overlap, union

HOLD_BACK_PROBES = 2
"""Probe intervals for which a pod back from an outage holds back timers that came due during
it (`store.fallback`): it cannot tell a partial outage from a full one, and holding back for
two probes lets a peer that never lost Redis claim them first."""


@dataclass(frozen=True)
class Reach:
    """Reachability of timers in `model`, for pods that merge within `recovery` seconds."""

    model: Model
    recovery: float
    """How long pods may take to merge back after an outage (the deactivation bound)."""

    def unreachable(self, origin: str, pod: str) -> list[Span]:
        """Intervals when no healthy pod could reach an instance of this origin.

        A Redis instance is out of reach while Redis is (for everyone) or while no pod is up
        and connected; a fallback instance lives in one pod's memory, out of reach while that
        pod is down.
        """
        model = self.model
        if origin == "fallback":
            return union(model.pod_down(pod))
        spans = [(w.start, w.end) for w in model.windows if w.kind in REACH_FAULTS]
        spans += model.timeout_spans()
        recovered = [
            (start, self.claiming_again(end, list(model.deactivations)))
            for start, end in union(spans)
        ]
        return union(recovered + self.no_pod_up())

    def claiming_again(self, end: float, pods: list[str]) -> float:
        """When the first of `pods`, cut off from Redis until `end`, claims every due timer:
        once it has merged (or the recovery allowance has passed), then the hold-back."""
        merged = [t for pod in pods for t, _ in self.model.deactivations.get(pod, ()) if t >= end]
        hold_back = HOLD_BACK_PROBES * self.model.info.service.probe_interval
        return min([*merged, end + self.recovery]) + hold_back

    def cut_off(self, pod: str) -> list[Span]:
        """When a pod's own partial outages kept it from claiming Redis timers."""
        return [
            (window.start, self.claiming_again(window.end, [pod]))
            for window in self.model.windows
            if window.kind == "partial_outage" and window.target == pod
        ]

    def no_pod_up(self) -> list[Span]:
        """When every pod was down or cut off on its own."""
        model = self.model
        pods = set(model.starts) | set(model.crashes)
        if not pods:
            return []
        cut = {pod: union(model.pod_down(pod) + self.cut_off(pod)) for pod in pods}
        common = cut[next(iter(pods))]
        for pod in pods:
            common = intersect(common, cut[pod])
        return common

    def excused(
        self, members: list[Instance], start: float, end: float, origin: str | None = None
    ) -> float:
        """How much of `[start, end]` a logical timer of `members` was out of every healthy
        pod's reach, judged in the store of `origin` (default: each member's own)."""
        model = self.model
        lease = model.info.service.lease_seconds
        spans: list[Span] = []
        for member in members:
            spans += self.unreachable(origin or member.origin, member.pod)
            spans += self.in_limbo(member.id)
            if (origin or member.origin) == "redis":
                # A claim that timed out may have leased it anyway: held until the lease lapses.
                spans += [
                    (t, t + lease)
                    for t, now, lease_until in model.unacked_claims
                    if lease_until is not None and member.scheduled_time <= now and t >= member.done
                ]
            for seq in member.claims:
                claim = model.rows[seq]
                if model.crashed_after(claim) or any(
                    claim["t"] <= c for c in model.crashes.get(claim["pod"], ())
                ):
                    spans.append((claim["t"], claim["t"] + lease))
        return overlap(union(spans), start, end)

    def in_limbo(self, instance: str) -> list[Span]:
        """When a failed merge had taken a fallback instance out of its pod's memory: from
        the merge's start until the pod merged back (`store.fallback`: the entry leaves
        memory before it is sent, so a merge cut short delays it rather than risk firing it
        twice). Nobody fires it meanwhile unless it landed, and then it is not late."""
        model = self.model
        spans = []
        for since, pod in model.limbo.get(instance, ()):
            merged = [t for t, _ in model.deactivations.get(pod, ()) if t >= since]
            spans.append((since, min(merged, default=model.end)))
        return spans

    def peak_backlog(self) -> int:
        """The most announced timers that came due inside one stretch when no pod could reach
        Redis (instances, so a timer copied into a fallback counts once per copy)."""
        peak = 0
        for start, end in self.unreachable("redis", ""):
            due = 0
            for instance in self.model.instances.values():
                deadline = self.model.deadline(instance)
                if instance.announced and deadline is not None and start <= deadline <= end:
                    due += 1
            peak = max(peak, due)
        return peak
