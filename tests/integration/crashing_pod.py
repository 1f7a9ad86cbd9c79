"""A pod that dies by SIGKILL right after it claims a timer, before the callback runs.

Run as a script by `test_runner_faults.py`: `python crashing_pod.py '<timer_store json>'`.
It prints the claimed fire id on stdout, then kills itself: the harshest crash between claim
and fire (no finally blocks, no lease release).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from store.runner import build_runner


def main() -> None:
    config = json.loads(sys.argv[1])

    def sink(kind: str, /, **fields: Any) -> None:
        if kind == "claim":
            print(json.dumps({"fire_id": fields["fire_id"]}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    async def fire(sender_id: str, session_id: str | None, scheduled_time: float) -> None:
        print(json.dumps({"fired": sender_id}), flush=True)  # never reached

    async def run() -> None:
        runner = build_runner(config, fire, sink=sink)
        await runner.start()
        await asyncio.sleep(30)

    asyncio.run(run())


if __name__ == "__main__":
    main()
