"""Logging set-up for timerlab's processes (the CLI, pods, simulator workers).

Library code only calls `structlog.get_logger()`; each process decides, once, what reaches its
output. Simulated runs keep only errors: their story is the history, not the log.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog

FORMATS = ("console", "json")
FORMAT_VARIABLE = "TIMERLAB_LOG_FORMAT"
"""Where a process finds the format when it is not given one: the CLI sets it, so the pods and
workers it starts log the same way."""


def configure_logging(
    level: int = logging.INFO, stream: TextIO | None = None, fmt: str | None = None
) -> None:
    """Log lines at `level` and above, to `stream` (stderr by default): key=value text
    (`console`) or one JSON object per line (`json`, for log collectors); `fmt` defaults to
    `$TIMERLAB_LOG_FORMAT`, else console."""
    fmt = fmt or os.environ.get(FORMAT_VARIABLE) or "console"
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
