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
# # Capacity planning
#
# A sweep of simulated configurations (the same code as `timerlab sweep`), or the results of
# one you ran already (`SWEEP_DIR`). Set the grid and the SLO below; the defaults are small so
# the notebook runs in CI in seconds.

# %% tags=["parameters"]
PODS = [1, 2]
CONVERSATIONS = [100, 300]
MESSAGE_RATE = [0.2]
TIMEOUT = [30.0]
POLL_INTERVAL = [1.0]
DURATION = 60.0
SLO_LATENESS = 1.5
SWEEP_DIR = None  # e.g. "reports/sweep" to load an earlier `timerlab sweep`

# %%
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from harness.sweep import Limits, grid, recommend, sweep, write_sweep

if SWEEP_DIR is None:
    out = Path(tempfile.mkdtemp(prefix="notebook-sweep-"))
    limits = Limits.from_bench(Path("reports/bench/results.json"), round_trip=0.0005)
    points = grid(PODS, CONVERSATIONS, MESSAGE_RATE, TIMEOUT, POLL_INTERVAL)
    table = sweep(points, DURATION, limits, jobs=2, slo_lateness=SLO_LATENESS, progress=False)
    write_sweep(table, limits, out, slo=SLO_LATENESS, calibration=None)
else:
    out = Path(SWEEP_DIR)
    table = pd.read_csv(out / "capacity.csv")
table

# %% [markdown]
# ## The smallest configuration meeting the SLO

# %%
print(recommend(table, SLO_LATENESS) if "meets_slo" in table else "no SLO column in this sweep")

# %% [markdown]
# ## Lateness, Redis load, memory and the oldest due timer against load

# %%
for name in ("lateness.png", "redis_ops.png", "memory.png", "oldest_due.png"):
    display(Image(filename=str(out / name)))
