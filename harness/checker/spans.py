"""Time spans, the checker's arithmetic: unions, intersections, overlaps of `(start, end)`."""

from __future__ import annotations

from collections.abc import Iterable

Span = tuple[float, float]

EPSILON = 1e-6
"""How far apart two moments may be and still count as one (seconds).

History times are sums and differences of floats (a row's `t` minus its `elapsed`), so two
moments the simulation made equal can differ in their last bits; over a run of days that
rounding stays below 1e-9 s. The shortest duration any rule compares is a round trip or a
clock step of a millisecond or more. One microsecond sits between the two by three orders of
magnitude each way.
"""


def union(spans: Iterable[Span]) -> list[Span]:
    """The spans merged where they touch or overlap, sorted."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def union_rows(spans: Iterable[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Like `union`, keeping the history row of the first span of each merged stretch."""
    merged: list[tuple[float, float, int]] = []
    for start, end, row in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end), merged[-1][2])
        else:
            merged.append((start, end, row))
    return merged


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """The times inside both lists of spans."""
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if start < end:
                out.append((start, end))
    return union(out)


def overlap(spans: list[Span], start: float, end: float) -> float:
    """How much of `[start, end]` the (disjoint) spans cover."""
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans)
