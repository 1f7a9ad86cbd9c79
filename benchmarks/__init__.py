"""Benchmarks of timerlab against baselines (not part of the installed `store` library)."""
