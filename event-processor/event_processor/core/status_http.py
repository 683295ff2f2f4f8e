"""The processor's own small HTTP endpoint (``http.host``:``http.port``, ``--host``/``--port``).

* ``GET /health/live`` - 200 while the event loop answers (liveness probes);
* ``GET /health`` - 200 while the processor runs and its last heartbeat reached Redis, else 503,
  with what it holds (JSON);
* ``GET /metrics`` - Prometheus text: events in flight and waiting for their account, whether it
  is stopping, whether IBKR is connected, seconds since the last heartbeat reached Redis, and the
  standard process metrics.

It answers only these GETs, reads at most 8 KiB of request head within 5 s, and never touches
Redis itself, so a probe cannot slow the worker down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from event_processor.core.event_processor import EventProcessor

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
READ_TIMEOUT = 5.0


class StatusServer:
    """Serves the three routes on a socket bound before the loop started."""

    def __init__(self, processor: EventProcessor, sock: socket.socket) -> None:
        self.processor = processor
        self.sock = sock
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Accept connections."""
        self._server = await asyncio.start_server(self._handle, sock=self.sock)
        host, port = self.sock.getsockname()[:2]
        log.info("status endpoint listening", extra={"host": host, "port": port})

    async def close(self) -> None:
        """Stop accepting and close the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path = _request_line(head)
            status, content_type, body = self._answer(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        writer.write(_response(status, content_type, body))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path not in ("/health/live", "/health", "/metrics"):
            return 404, "text/plain", b"not found\n"
        if method != "GET":
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.processor.metrics.render()
        if path == "/health/live":
            return 200, "application/json", b'{"status":"alive"}'
        report = self.processor.health()
        return (200 if report["status"] == "healthy" else 503, "application/health+json",
                json.dumps(report).encode())


def _request_line(head: bytes) -> tuple[str, str]:
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError("request head too large")
    method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, target.split("?", 1)[0]


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body

