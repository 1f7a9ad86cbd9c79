"""Baselines for side-by-side benchmarks: reimplementations of what we compare against.

Nothing under `store/` may import from here; these exist only so a benchmark can run the
reference store and the system it replaces against the same Redis and count the difference.
"""
