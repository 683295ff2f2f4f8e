"""Logging set-up: one JSON object per line, with the ``extra`` fields of each call."""

from __future__ import annotations

import logging
import sys

from event_processor.config import LoggingConfig
from event_queue.logs import JsonFormatter


def configure_logging(config: LoggingConfig) -> None:
    """Send every log line to stderr, as JSON lines unless configured otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if config.json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    # ib_async logs every failed connection attempt itself; our retry log says the same once.
    logging.getLogger("ib_async").setLevel(max(logging.WARNING, root.level))
