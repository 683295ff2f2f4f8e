"""The broker's refusals: few, named, each carrying its HTTP status and a message a person can act on.

Messages never contain a credential or the request body. :func:`error_response` is the one place
that turns an error into an HTTP answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from event_queue import QueueUnavailable
from event_queue.accounts import AccountDisabled, UnknownAccount


class BrokerError(Exception):
    """A request the broker refuses; subclasses fix the status, the outcome label and the code."""

    status: ClassVar[int] = 400
    outcome: ClassVar[str] = "rejected"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class Unauthorized(BrokerError):
    """Credentials are missing or wrong."""

    status = 401
    outcome = "unauthorized"


class Forbidden(BrokerError):
    """The source address is not in the allow-list."""

    status = 403
    outcome = "forbidden"


class PayloadTooLarge(BrokerError):
    """The body is bigger than the configured limit."""

    status = 413
    outcome = "too_large"


class UnsupportedMediaType(BrokerError):
    """The body is neither JSON nor plain text holding JSON."""

    status = 415
    outcome = "unsupported_media_type"


class InvalidEvent(BrokerError):
    """The body is not a valid event, or names an account that may not trade."""

    status = 422
    outcome = "invalid"


class Disconnected(BrokerError):
    """The sender went away before its body arrived; nothing was queued."""

    status = 400
    outcome = "disconnected"


class Unavailable(BrokerError):
    """The queue cannot be reached; the sender should retry."""

    status = 503
    outcome = "unavailable"


def as_broker_error(exc: Exception) -> BrokerError:
    """Map the shared library's errors onto the broker's; other exceptions are bugs."""
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, UnknownAccount | AccountDisabled):
        return InvalidEvent(f"{exc}; add it (enabled) to the accounts file and restart the broker")
    if isinstance(exc, QueueUnavailable):
        return Unavailable(
            "the event queue is unreachable, so the event may not have been queued; send it again "
            "later (a resend is answered as a duplicate if the first attempt got through)"
        )
    raise TypeError(f"no HTTP mapping for {type(exc).__name__}") from exc


def error_body(error: BrokerError) -> dict[str, Any]:
    """The JSON body of a refusal."""
    body: dict[str, Any] = {"status": "error", "error": error.outcome, "detail": error.detail}
    if error.errors is not None:
        body["errors"] = error.errors
    return body


def error_headers(error: BrokerError, retry_after_seconds: int) -> dict[str, str]:
    """The headers of a refusal: when to retry (503), how to authenticate (401)."""
    if error.status == 503:
        return {"Retry-After": str(retry_after_seconds)}
    if error.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="event-broker"'}
    return {}
