"""One JSON log line format for every service, so operators read and ship all logs the same way.

Each line is an object with ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, then the record's own
fields: either ``extra={"fields": {...}}`` or plain ``extra={...}`` keys, and ``exc`` for a traceback.
Callers never pass secrets in fields; the services' tests check that none reaches a line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# uvicorn adds "color_message" to its records: a terminal rendering of msg, not a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "fields", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))
