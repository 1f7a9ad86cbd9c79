"""The rows of `timerlab bench`, one module each; `benchmarks.runner` runs and reports them.

Every row module has `NAME` and `run(ctx: RowContext) -> RowResult`, starts its own
redis-server (or none, for `sim`) and stops it however it ends.
"""
