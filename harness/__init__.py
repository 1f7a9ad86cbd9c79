"""The glue of timerlab: one history format, one checker, reports, topologies and the CLI."""
