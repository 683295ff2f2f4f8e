"""JSON logs: one object per line on stdout, never written from the event loop.

Records are formatted where they are logged (cheap) and written by a background thread a few times a
second, so a slow or full stdout pipe never blocks the event loop, and the loop does not hand the
GIL to a writer thread once per record. Records carry their fields in ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
from typing import TextIO

from event_queue.logs import JsonFormatter

_handler: BackgroundLineWriter | None = None


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
            lines.append(json.dumps({"level": "warning", "logger": "event_broker.logs",
                                     "msg": f"{dropped} log lines dropped: stdout was blocked"}))
        if lines:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Write out what is buffered and stop the writer thread."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        super().close()


def stop_logging() -> None:
    """Write out the buffered lines (at exit; also called on SIGTERM)."""
    global _handler
    if _handler is not None:
        _handler.close()
        _handler = None


def configure_logging(level: str) -> None:
    """Send every log record (uvicorn's included) through one JSON handler on stdout."""
    global _handler
    stop_logging()
    # The logging HOWTO's optimisations: no caller lookup or thread/process names per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _handler = BackgroundLineWriter(sys.stdout)
    _handler.setFormatter(JsonFormatter())
    atexit.register(stop_logging)
    root = logging.getLogger()
    root.handlers = [_handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
