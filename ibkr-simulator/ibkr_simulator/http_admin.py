"""A thin JSON-over-HTTP layer (stdlib asyncio) over the Admin operations.

Routes (all answers are JSON):

    GET  /health                                  {"ok": true}
    GET  /state                                   full state
    POST /prices/{symbol}                         {"bid":..,"ask":..,"last":..,"close":..}
    POST /accounts/{account}/cash                 {"cash": 1000, "currency": "USD"}
    POST /market-data/{symbol}                    {"live": false}   (delayed data only)
    POST /accounts/{account}/positions/{symbol}   {"quantity": 10, "avg_cost": 100}
    POST /auction/close                           {"prices": {"SPY": 500}}   (optional)
    POST /faults/refuse-connections               {"refuse": true}
    POST /faults/drop-connections
    POST /faults/unanswered                       {"request": "reqExecutions", "unanswered": true}
    POST /faults/reject-next-order                {"code": 201, "text": "..."}
    POST /faults/fill-delay                       {"seconds": 0.5}
    POST /faults/partial-fill                     {"quantity": 10}
    POST /faults/clear
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from .admin import Admin

log = logging.getLogger(__name__)

Handler = Callable[[Admin, dict[str, str], dict[str, Any]], Awaitable[Any]]
MAX_BODY = 1024 * 1024


class HttpError(Exception):
    """An HTTP error status with a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _state(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    return await a.state()


async def _health(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    return {"ok": True}


async def _price(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.set_price(p["symbol"], **{k: b[k] for k in ("bid", "ask", "last", "close") if k in b})


async def _cash(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.set_cash(p["account"], float(b["cash"]), str(b.get("currency", "USD")))


async def _market_data(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.set_market_data(p["symbol"], bool(b["live"]))


async def _position(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.set_position(p["account"], p["symbol"], float(b["quantity"]),
                         float(b.get("avg_cost", 0.0)))


async def _auction(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    return {"fills": await a.run_close_auction(b.get("prices"))}


async def _refuse(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.refuse_connections(bool(b.get("refuse", True)))


async def _drop(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.drop_connections()


async def _unanswered(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.leave_unanswered(b["request"], bool(b.get("unanswered", True)))


async def _reject(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.reject_next_order(**{k: b[k] for k in ("code", "text") if k in b})


async def _delay(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.set_fill_delay(float(b["seconds"]))


async def _partial(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.fill_partially(float(b["quantity"]))


async def _clear(a: Admin, p: dict[str, str], b: dict[str, Any]) -> Any:
    await a.clear_faults()


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"/health"), _health),
    ("GET", re.compile(r"/state"), _state),
    ("POST", re.compile(r"/prices/(?P<symbol>[^/]+)"), _price),
    ("POST", re.compile(r"/accounts/(?P<account>[^/]+)/cash"), _cash),
    ("POST", re.compile(r"/accounts/(?P<account>[^/]+)/positions/(?P<symbol>[^/]+)"), _position),
    ("POST", re.compile(r"/market-data/(?P<symbol>[^/]+)"), _market_data),
    ("POST", re.compile(r"/auction/close"), _auction),
    ("POST", re.compile(r"/faults/refuse-connections"), _refuse),
    ("POST", re.compile(r"/faults/drop-connections"), _drop),
    ("POST", re.compile(r"/faults/unanswered"), _unanswered),
    ("POST", re.compile(r"/faults/reject-next-order"), _reject),
    ("POST", re.compile(r"/faults/fill-delay"), _delay),
    ("POST", re.compile(r"/faults/partial-fill"), _partial),
    ("POST", re.compile(r"/faults/clear"), _clear),
]


def route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    """The handler and path parameters for a request, or HttpError 404/405."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    allowed = False
    for verb, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if verb == method:
                return handler, match.groupdict()
            allowed = True
    raise HttpError(405 if allowed else 404, f"no route for {method} {path}")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, Any]]:
    request_line = (await reader.readline()).decode("latin-1").strip()
    parts = request_line.split()
    if len(parts) < 2:
        raise HttpError(400, "bad request line")
    length = 0
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    raw = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return parts[0].upper(), parts[1], body


def _response(status: int, payload: Any) -> bytes:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
               413: "Payload Too Large", 500: "Internal Server Error"}
    body = json.dumps(payload, default=str).encode()
    head = (f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class AdminHttpServer:
    """Serves the admin routes on host:port (127.0.0.1 by default)."""

    def __init__(self, admin: Admin, host: str, port: int) -> None:
        self.admin = admin
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Start listening (port 0 picks a free port)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and wait for requests in flight."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError,
                                     asyncio.IncompleteReadError):
                writer.write(await self._answer(reader))
                await writer.drain()
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            method, path, body = await _read_request(reader)
            handler, params = route(method, path)
            result = await handler(self.admin, params, body)
            return _response(200, result if result is not None else {"ok": True})
        except HttpError as exc:
            return _response(exc.status, {"error": str(exc)})
        except (KeyError, TypeError, ValueError) as exc:
            return _response(400, {"error": repr(exc)})
        except Exception as exc:
            log.exception("admin request failed")
            return _response(500, {"error": repr(exc)})
