"""Reading a webhook: content type, bounded body, JSON, the passphrase, and the shared event model.

Validation itself lives in :class:`event_queue.requests.EventRequest`, shared with the management
service; this module only turns its errors into messages a sender can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.types import Receive, Scope

from event_broker.errors import (
    Disconnected,
    InvalidEvent,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from event_queue import strict_json
from event_queue.requests import EventRequest

PASSPHRASE_FIELD = "passphrase"  # noqa: S105 - a field name, not a secret
JSON_TYPES = frozenset({"application/json", "text/plain"})
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_REMOVED = {"health": "the 'health' command was removed; monitor GET /health on the "
                      "management service instead"}
_UNKNOWN_FIELD = {
    1: "unknown field; allowed: account_id, exec_command (or exec), data",
    2: "unknown field; data allows strategy, allocations, cash_reserve_percent, order_type",
}


def check_content_type(value: str | None) -> None:
    """Accept JSON, or plain text holding JSON (what TradingView sends), in UTF-8."""
    media_type, _, params = (value or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'!r} is not supported; send the event as JSON "
            "with 'Content-Type: application/json' (or text/plain holding JSON)"
        )
    charset = _param(params, "charset")
    if charset is not None and charset.lower() not in _CHARSETS:
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; send UTF-8")


def _param(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def check_declared_length(value: str | None, limit: int) -> None:
    """Refuse early when Content-Length already says the body is too big."""
    if value is not None and value.isdigit() and int(value) > limit:
        raise PayloadTooLarge(too_large_message(limit))


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name; the first value wins, as in Starlette.

    Repeated ``X-Forwarded-For`` headers are joined, as a proxy chain would have them.
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name not in headers:
            headers[name] = value
        elif name == "x-forwarded-for":
            headers[name] += ", " + value
    return headers


async def read_bounded(receive: Receive, limit: int) -> bytes:
    """The body, counted as it streams in; :class:`PayloadTooLarge` once it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected("the sender closed the connection before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large_message(limit))
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def too_large_message(limit: int) -> str:
    return f"the body is larger than {limit} bytes; an event is a few hundred bytes"


def decode_object(body: bytes, *, authenticated: bool) -> dict[str, Any]:
    """Parse the body as a strict JSON object (UTF-8, finite numbers, bounded nesting).

    An unauthenticated sender learns nothing about its body: it gets 401, not a parse error.
    """
    try:
        payload = strict_json.loads(body)
    except strict_json.InvalidJson as exc:
        if not authenticated:
            raise _no_credentials() from None
        raise InvalidEvent(f"the body is not valid UTF-8 JSON: {exc.reason}") from None
    if not isinstance(payload, dict):
        if not authenticated:
            raise _no_credentials()
        raise InvalidEvent("the body must be a JSON object such as "
                           '{"account_id": "DU1234567", "exec_command": "rebalance"}')
    return payload


def _no_credentials() -> Unauthorized:
    return Unauthorized(
        "no credentials: sign the webhook (webhook-signature), send 'Authorization: Bearer "
        "<token>', or put the token in the JSON body as 'passphrase'"
    )


def validate_event(payload: Mapping[str, Any]) -> EventRequest:
    """The shared request model, or :class:`InvalidEvent` listing every problem by field."""
    try:
        return EventRequest.model_validate(payload)
    except ValidationError as exc:
        errors = [_describe(error) for error in exc.errors(include_url=False)]
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"]
                           for e in errors)
        raise InvalidEvent(f"invalid event: {detail}", errors=errors) from None


def _describe(error: Any) -> dict[str, Any]:
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if error["type"] == "extra_forbidden":
        message = _UNKNOWN_FIELD.get(len(error["loc"]), "unknown field")
    elif field in ("exec_command", "exec") and isinstance(given, str) and given in _REMOVED:
        message = f"{message} ({_REMOVED[given]})"
    return {"field": field, "message": message}
