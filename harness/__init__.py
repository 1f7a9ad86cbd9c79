"""The top of timerlab: the checker that judges a run, the report that draws it, the gate and the
sweep that orchestrate many runs, and the `timerlab` command. It depends on every other package;
none depends on it."""
