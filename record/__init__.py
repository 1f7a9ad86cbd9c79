"""What a run leaves behind, in one format for both drivers: the history, the run's
description, fault descriptions, logs. The simulator and the load harness write it; the harness
judges and draws it."""
