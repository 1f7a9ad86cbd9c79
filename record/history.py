"""One history format for every run, simulated or real.

A history is a CSV file, one event per row, in the order events happened. The simulator and
the load-test pods write it; `harness.checker` judges it; `harness.report` draws it; pandas
reads it directly (`read_history` adds the right dtypes). Floats are written with `repr`, so
times and scheduled times survive the round trip bit for bit, and a run's history hashes to
the same value whenever the run is the same.

Columns:
- `seq`: row number; `t`: true time (simulated seconds, or host Unix time in a load test);
  `pod_time`: that pod's own clock; `pod`: which pod ("" for the world: faults, Redis);
- `kind`: see `KINDS`;
- `sender_id`, `session_id`, `scheduled_time`, `version`, `instance` (the write's id),
  `fire_id`, `attempt`, `origin` ("redis", "fallback", "memory", "custom");
- `outcome` (`fire_start` / `fire_done` for fires), `result` (`ok`, `error`, `timeout`, ...);
- `elapsed`: how long the call took on the pod's clock (so its start is `t - elapsed`);
- `detail`: a JSON object with everything else an event carries.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from store.events import EventSink

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "seq", "t", "pod_time", "pod", "kind", "sender_id", "session_id", "scheduled_time",
    "version", "instance", "fire_id", "attempt", "origin", "outcome", "result", "elapsed",
    "detail",
)  # fmt: skip

KINDS = frozenset(
    {
        # conversations and timers
        "message", "schedule", "cancel", "claim", "fire", "skip", "give_up", "recovery",
        "call_failed", "store_error", "loop_lag",
        # the fallback
        "fallback_activated", "fallback_deactivated", "reconciled", "reconcile_dropped",
        "write_unacknowledged", "merge_interrupted",
        # the world
        "fault_start", "fault_end", "pod_crash", "pod_start", "pod_stop", "redis_restart",
        "redis_data_loss", "run_start", "run_end",
    }
)  # fmt: skip
"""Every event kind a history may hold."""

_FLOATS = ("t", "pod_time", "scheduled_time", "elapsed")
_INTS = ("seq", "version", "attempt")
_FIELDS = frozenset(COLUMNS) - {"seq", "t", "pod_time", "pod", "kind", "detail"}


class HistoryWriter:
    """Appends events to a history file (or any text stream), flushing each row.

    Flushing per row is what lets a pod that is killed with SIGKILL leave a usable history.
    """

    def __init__(self, target: Path | IO[str]) -> None:
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
            self._stream: IO[str] = target.open("w", encoding="utf-8", newline="")
            self._owned = True
        else:
            self._stream, self._owned = target, False
        self._csv = csv.writer(self._stream, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self._seq = 0

    def record(self, t: float, pod_time: float | None, pod: str, kind: str, **fields: Any) -> None:
        """Write one event; fields that are not columns go into `detail`."""
        if kind not in KINDS:
            raise ValueError(f"unknown history event kind {kind!r}")
        row: dict[str, Any] = {"seq": self._seq, "t": t, "pod_time": pod_time, "pod": pod}
        row["kind"] = kind
        detail = {}
        for key, value in fields.items():
            if key in _FIELDS:
                row[key] = value
            elif value is not None:
                detail[key] = value
        row["detail"] = json.dumps(detail, sort_keys=True, default=str) if detail else ""
        self._csv.writerow([_cell(row.get(column)) for column in COLUMNS])
        self._stream.flush()
        self._seq += 1

    def sink(
        self, pod: str, true_time: Callable[[], float], pod_clock: Callable[[], float]
    ) -> EventSink:
        """An `EventSink` for one pod's store and service."""

        def record(kind: str, /, **fields: Any) -> None:
            self.record(true_time(), pod_clock(), pod, kind, **fields)

        return record

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_history(path: Path | str | IO[str]) -> pd.DataFrame:
    """The history as a DataFrame with proper dtypes (ids stay strings, even "NA" or "007")."""
    import pandas as pd

    text_columns = [c for c in COLUMNS if c not in _FLOATS and c not in _INTS]
    frame = pd.read_csv(
        path,
        dtype={**dict.fromkeys(text_columns, "string"), **dict.fromkeys(_FLOATS, "float64")},
        keep_default_na=False,
        na_values={c: [""] for c in (*_FLOATS, *_INTS)},
    )
    for column in text_columns:
        frame[column] = frame[column].replace("", pd.NA)
    for column in _INTS:
        frame[column] = frame[column].astype("Int64")
    return frame


def details(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The `detail` column parsed, row by row."""
    return [json.loads(value) if isinstance(value, str) else {} for value in frame["detail"]]


def history_hash(path: Path) -> str:
    """SHA-256 of the history file: equal runs have equal hashes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def merge_histories(paths: Iterable[Path], out: Path) -> int:
    """Merge per-pod history files into one, ordered by true time; returns the row count.

    Rows keep their own columns; `seq` is renumbered. Stable for equal times (file order).
    """
    rows: list[tuple[float, int, int, list[str]]] = []
    for index, path in enumerate(sorted(paths)):
        for line_number, row in enumerate(_rows(path)):
            rows.append((float(row[1]), index, line_number, row))
    rows.sort(key=lambda item: item[:3])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        for seq, (_, _, _, row) in enumerate(rows):
            writer.writerow([str(seq), *row[1:]])
    return len(rows)


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path} is not a timerlab history (unexpected columns)")
        for row in reader:
            if len(row) == len(COLUMNS):  # a pod killed mid-write may leave a torn last line
                yield row
