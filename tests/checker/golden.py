"""Committed histories and the verdicts the checker gave them: `test_golden.py` holds the
checker to them.

Each directory under `golden/` is one run: its `history.csv.gz`, its `run.json`, and the
`verdict.json` expected of it. They are the shrunk regressions of `tests/sim/regressions.yaml`,
gate seeds that exercise every declared loss, and broken stores that break rules. The expected
verdicts were first written by the checker before it was split into a model and rules; they
matched it on 200 gate seeds and every regression.

`python -m tests.checker.golden` rewrites every `verdict.json` from the checker as it is now.
Run it only for a change of verdict that is intended, and let the diff say what changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from harness.checker import check, load_rows
from record.runinfo import RunInfo

GOLDEN = Path(__file__).with_name("golden")


def runs() -> list[Path]:
    return sorted(path for path in GOLDEN.iterdir() if path.is_dir())


def verdict_data(run: Path) -> dict[str, Any]:
    """The checker's verdict on a committed run, as JSON data."""
    with gzip.open(run / "history.csv.gz", "rt", encoding="utf-8", newline="") as history:
        rows = load_rows(history)
    verdict = check(rows, RunInfo.load(run / "run.json"))
    # What `to_data` leaves out but reports draw (every fire's lateness), by digest: a change
    # shows as a changed digest without a megabyte of fires in the diff.
    fires = json.dumps(verdict.fires, sort_keys=True).encode()
    data = {**verdict.to_data(), "fires_sha256": hashlib.sha256(fires).hexdigest()}
    return json.loads(json.dumps(data))


def main() -> None:
    for run in runs():
        data = verdict_data(run)
        (run / "verdict.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"{run.name}: {'PASS' if data['ok'] else 'FAIL'}")


if __name__ == "__main__":
    main()
