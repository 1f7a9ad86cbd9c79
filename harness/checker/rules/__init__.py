"""The rule families: each a pure function from the model (and the bounds) to findings."""
