"""Logging set-up for timerlab's processes (the CLI, pods, simulator workers).

Library code only calls `structlog.get_logger()`; each process decides, once, what reaches its
output. Simulated runs keep only errors: their story is the history, not the log.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Key=value lines at `level` and above, to `stream` (stderr by default)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
