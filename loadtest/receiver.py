"""The receiver of every pod's fires: the stand-in for a conversation tracker.

Delivery is at-least-once: a pod that dies between its callback and the release of its lease,
or a callback whose reply was lost, makes another pod fire the same instance again, with the
same fire id. A tracker drops such repeats by fire id, across all pods; so does this receiver,
and it counts both numbers: raw fires (what the pods sent) and deduplicated ones (what a user
of the conversation would see).

    python -m loadtest.receiver --port PORT --log DIR/receiver.csv

`POST /fire` takes `{"fire_id", "sender_id", "scheduled_time", "pod"}`; `GET /stats` answers
`{"raw", "deduplicated", "duplicates_dropped", "by_pod"}`. Each fire is also appended to the
CSV log (arrival time, ids, pod, whether it was a repeat) for analysis beside the history.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

from aiohttp import web

HOST = "127.0.0.1"
LOG_COLUMNS = ("t", "fire_id", "sender_id", "scheduled_time", "pod", "repeat")


class Receiver:
    """Counts fires, keeping each fire id once."""

    def __init__(self, log: Path | None = None) -> None:
        self.seen: set[str] = set()
        self.raw = 0
        self.by_pod: Counter[str] = Counter()
        self._log_path = log
        self._log: IO[str] | None = None

    def receive(self, fire: dict[str, Any]) -> bool:
        """Count one fire; True if its fire id is new (the tracker acts on it)."""
        fire_id = str(fire["fire_id"])
        self.raw += 1
        self.by_pod[str(fire.get("pod", ""))] += 1
        new = fire_id not in self.seen
        self.seen.add(fire_id)
        return new

    def stats(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "deduplicated": len(self.seen),
            "duplicates_dropped": self.raw - len(self.seen),
            "by_pod": dict(self.by_pod),
        }

    def _append_log(self, fire: dict[str, Any], new: bool) -> None:
        if self._log is None:
            return
        csv.writer(self._log, lineterminator="\n").writerow(
            [
                repr(time.time()),
                fire["fire_id"],
                fire.get("sender_id", ""),
                fire.get("scheduled_time", ""),
                fire.get("pod", ""),
                "false" if new else "true",
            ]
        )
        self._log.flush()  # a receiver killed by the run's clean-up still leaves its log

    def app(self) -> web.Application:
        app = web.Application()

        async def log_file(_: web.Application) -> AsyncIterator[None]:
            if self._log_path is None:
                yield
                return
            with self._log_path.open("w", encoding="utf-8", newline="") as stream:
                csv.writer(stream, lineterminator="\n").writerow(LOG_COLUMNS)
                self._log = stream
                yield
                self._log = None

        async def fire(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                new = self.receive(body)
            except (ValueError, KeyError, TypeError) as exc:
                raise web.HTTPBadRequest(text=f"bad fire: {exc}") from None
            self._append_log(body, new)
            return web.json_response({"new": new})

        async def stats(_: web.Request) -> web.Response:
            return web.json_response(self.stats())

        app.cleanup_ctx.append(log_file)
        app.router.add_post("/fire", fire)
        app.router.add_get("/stats", stats)
        return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deduplicating receiver of timer fires.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, help="CSV file of every fire received")
    args = parser.parse_args(argv)
    web.run_app(Receiver(args.log).app(), host=HOST, port=args.port, print=None)


if __name__ == "__main__":
    main()
