"""The access log: one structured line per request, without the query string.

Fields: ``method``, ``path`` (never the query string: a key sent in a URL must not reach a log),
``status``, ``duration_ms`` and ``client``. A pure ASGI middleware, outermost, so it also sees the
answers of the other middlewares (413) and of errors (500).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("management_service.access")


class AccessLog:
    """Log every HTTP request once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log_request(scope, status, started)


def log_request(scope: Scope, status: int, started: float) -> None:
    """The access log's line for one answered request (``started``: ``time.perf_counter()``)."""
    client = scope.get("client")
    log.info("request", extra={"fields": {
        "method": scope["method"], "path": scope["path"], "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "client": client[0] if client else None}})
