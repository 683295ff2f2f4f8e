"""One JSON log format and one log stream (stdout) for every program of the project.

Each line is an object with ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, then the record's own
fields: either ``extra={"fields": {...}}`` or plain ``extra={...}`` keys, and ``exc`` for a traceback.
Callers never pass secrets in fields; the services' tests check that none reaches a line.

:func:`configure_logging` sends every record (uvicorn's included) to stdout through
:class:`BackgroundLineWriter`: records are formatted where they are logged (cheap) and written by a
background thread a few times a second, so a slow or full stdout pipe never blocks an event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# uvicorn adds "color_message" to its records: a terminal rendering of msg, not a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "fields", "color_message"}
# Libraries that log every failed connection attempt themselves; our own lines say it once.
_CHATTY = ("ib_async", "ib_insync", "asyncio")

_handler: BackgroundLineWriter | None = None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    # For what orjson refuses (an integer beyond 64 bits, a non-string key): the standard library.
    _fallback = json.JSONEncoder(default=str, separators=(",", ":"))

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads may format at once

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        attributes = record.__dict__
        for name in attributes.keys() - _STANDARD:
            line[name] = attributes[name]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        try:  # orjson: a seventh of the standard library's time for a typical line
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return self._fallback.encode(line)

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC to the millisecond, as ``datetime.isoformat`` writes it; the text of
        the whole second is reused from the previous line."""
        second = int(created)
        micros = round((created - second) * 1_000_000)  # datetime's own rounding, then truncation
        if micros >= 1_000_000:
            second, micros = second + 1, 0
        cached_second, text = self._second
        if second != cached_second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}+00:00"


class BackgroundLineWriter(logging.Handler):
    """Buffers formatted lines and writes them from a thread every ``interval`` seconds.

    Warnings and errors wake the writer at once. If the stream stays blocked, at most
    ``max_lines`` lines are kept and the number dropped is reported when writing resumes.
    """

    def __init__(self, stream: TextIO, *, interval: float = 0.1, max_lines: int = 100_000) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval
        self._max_lines = max_lines
        self._lines: list[str] = []
        self._dropped = 0
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and queue its line."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._buffer_lock:
            if len(self._lines) < self._max_lines:
                self._lines.append(line)
            else:
                self._dropped += 1
        if record.levelno >= logging.WARNING:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write_out()
        self._write_out()

    def _write_out(self) -> None:
        with self._buffer_lock:
            lines, self._lines = self._lines, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines.append(json.dumps({"level": "warning", "logger": "event_queue.logs",
                                     "msg": f"{dropped} log lines dropped: stdout was blocked"}))
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # the reader went away (closed pipe): nothing to do
                pass

    def flush(self) -> None:
        """Write out what is buffered now."""
        self._write_out()

    def close(self) -> None:
        """Write out what is buffered and stop the writer thread."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        super().close()


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's included, to stdout as JSON lines."""
    global _handler
    stop_logging()
    # The logging HOWTO's optimisations: no caller lookup or thread/process names per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _handler = BackgroundLineWriter(stream or sys.stdout)
    _handler.setFormatter(JsonFormatter())
    atexit.register(stop_logging)
    root = logging.getLogger()
    root.handlers = [_handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def stop_logging() -> None:
    """Write out the buffered lines and stop the writer (at exit, and after a stop signal)."""
    global _handler
    if _handler is not None:
        _handler.close()
        _handler = None
