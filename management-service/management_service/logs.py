"""JSON-lines logging (the shared format of :mod:`event_queue.logs`), uvicorn's records included."""

from __future__ import annotations

import logging
import sys

from event_queue.logs import JsonFormatter


def configure_logging(level: str = "INFO") -> None:
    """Send every log record (uvicorn's included) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
