"""The service's own errors and the one exception handler that maps every known error to HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from event_queue import (
    EventFinished,
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    InvalidCursor,
    InvalidResult,
    LeaseLost,
    QueueUnavailable,
)
from event_queue.accounts import AccountDisabled, UnknownAccount

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the errors raised by the management service itself."""


class ApiKeyMissing(ServiceError):
    """The request carries no API key header."""

    def __init__(self, header: str) -> None:
        super().__init__(f"missing API key: send it in the {header} header")


class ApiKeyWrong(ServiceError):
    """The API key does not match."""

    def __init__(self) -> None:
        super().__init__("wrong API key")


class MutationsDisabled(ServiceError):
    """No mutation key is configured, so every mutation is refused."""

    def __init__(self) -> None:
        super().__init__("mutations disabled: MANAGEMENT_API_KEY is not set")


class ManualEventsDisabled(ServiceError):
    """No accounts file is configured, so manual events cannot be validated."""

    def __init__(self) -> None:
        super().__init__("manual events disabled: ACCOUNTS_FILE is not set")


class DuplicateEvent(ServiceError):
    """The account:command already has an active event."""

    def __init__(self, existing_event_id: str, dedup_key: str) -> None:
        super().__init__(f"an event for {dedup_key} is already active: {existing_event_id}")
        self.existing_event_id = existing_event_id
        self.dedup_key = dedup_key


class InvalidBody(ServiceError):
    """The body is not strict UTF-8 JSON: bad encoding, NaN or Infinity, numbers too large for a
    float, or nesting too deep."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid JSON body: {reason}")
        self.reason = reason


class FilterTooBroad(ServiceError):
    """A filter would need to read more events than one request may."""

    def __init__(self, state: str, size: int, cap: int) -> None:
        super().__init__(
            f"state={state} holds {size} events; combining it with exec_command reads them all "
            f"(at most {cap} per request): filter by exec_command alone, add account_id, or "
            f"use state alone"
        )
        self.state = state


STATUS: dict[type[Exception], int] = {
    ApiKeyMissing: 401,
    ApiKeyWrong: 401,
    MutationsDisabled: 403,
    EventNotFound: 404,
    EventProcessing: 409,
    EventNotWaiting: 409,
    EventFinished: 409,
    LeaseLost: 409,
    DuplicateEvent: 409,
    UnknownAccount: 422,
    FilterTooBroad: 422,
    InvalidBody: 422,
    AccountDisabled: 422,
    InvalidResult: 422,
    InvalidCursor: 422,
    ManualEventsDisabled: 503,
    QueueUnavailable: 503,
    RedisError: 503,  # e.g. OOM under noeviction, READONLY replica, MISCONF: Redis refuses, not us
}


def error_body(exc: Exception) -> dict[str, Any]:
    """The JSON body for a known error: ``detail`` plus the data the error carries."""
    if isinstance(exc, UnknownAccount | AccountDisabled):
        kind = "unknown_account" if isinstance(exc, UnknownAccount) else "account_disabled"
        return {"detail": [{"loc": ["body", "account_id"], "msg": str(exc), "type": kind}]}
    if isinstance(exc, InvalidBody | InvalidResult):
        return {"detail": [{"loc": ["body"], "msg": str(exc), "type": "invalid_json"}]}
    if isinstance(exc, InvalidCursor):
        return {"detail": [{"loc": ["query"], "msg": f"{exc}: pass the older or newer value of "
                            "a page as before or after", "type": "invalid_cursor"}]}
    if isinstance(exc, RedisError) and not isinstance(exc, QueueUnavailable):
        return {"detail": f"queue unavailable: Redis answered {type(exc).__name__}: {exc}"}
    body: dict[str, Any] = {"detail": str(exc)}
    for field in ("event_id", "state", "existing_event_id", "dedup_key"):
        if hasattr(exc, field):
            body[field] = getattr(exc, field)
    return body


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: a known error becomes its status code and a JSON body."""
    status = next(code for kind, code in STATUS.items() if isinstance(exc, kind))
    if status == 503:
        logger.warning("request failed: %s", exc, extra={"fields": {"path": request.url.path}})
    return JSONResponse(error_body(exc), status_code=status)


def install(app: FastAPI) -> None:
    """Route every error class of :data:`STATUS` to :func:`handle_error`."""
    for kind in STATUS:
        app.add_exception_handler(kind, handle_error)
