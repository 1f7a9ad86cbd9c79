# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Failure scenarios
#
# Run (or load) one simulated or load run, look at its timeline, and walk through every
# violation with the history rows it points at. All logic lives in `harness/`: this notebook
# only calls it and shows the results.
#
# Change `SCENARIO` / `SEED` / `STORE`, or set `RUN_DIR` to an existing run directory (a
# `timerlab sim`, `gate` or `load` output) to analyse that instead.

# %% tags=["parameters"]
SCENARIO = "redis-outage"
SEED = 1
STORE = None  # e.g. "tests.fixtures.broken_stores.IgnoresConditionStore"
RUN_DIR = None  # e.g. "runs/gate/seed-17"

# %%
import tempfile
from pathlib import Path

from IPython.display import Image, display

from harness.checker import check_run
from harness.report import build_report
from harness.simrun import run_and_check
from record.history import read_history
from sim.scenarios import build_spec

if RUN_DIR is None:
    run_dir = Path(tempfile.mkdtemp(prefix="notebook-run-"))
    verdict, digest = run_and_check(build_spec(SCENARIO, SEED, store=STORE), run_dir)
else:
    run_dir = Path(RUN_DIR)
    verdict = check_run(run_dir)
print(verdict.table())

# %% [markdown]
# ## Timeline
# Faults on the top lane, then each pod's fallback (pink) and downtime (grey), then the fire
# rate. A fallback should start within the activation bound of a fault and end within the
# deactivation bound of its end.

# %%
report = build_report(run_dir, run_dir / "report", verdict)
display(Image(filename=str(report.index.with_name("timeline.png"))))
display(Image(filename=str(report.index.with_name("lateness.png"))))

# %% [markdown]
# ## The history
# One row per event; `read_history` gives pandas dtypes (ids stay strings).

# %%
history = read_history(run_dir / "history.csv")
history["kind"].value_counts()

# %% [markdown]
# ## Each violation, with its history rows

# %%
by_seq = history.set_index("seq")
for violation in verdict.violations[:10]:
    print(f"{violation.rule}: {violation.message}")
    display(by_seq.loc[[row for row in violation.rows if row in by_seq.index]])
if not verdict.violations:
    print("No violations: the run passed.")

# %% [markdown]
# ## Declared losses
# Counted, never hidden: what the faults were allowed to lose.

# %%
{name: count for name, count in verdict.declared.items() if count}
