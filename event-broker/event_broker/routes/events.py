"""``POST /events``: the webhook.

The body is read raw (a signature covers the exact bytes), bounded, authenticated, validated with
the shared :class:`~event_queue.requests.EventRequest` and enqueued with the next micro-batch.
Every answer is counted and logged as one JSON line, without credentials.

This one route is a plain ASGI endpoint inside the FastAPI app rather than a FastAPI path
operation: measured here, FastAPI's per-request machinery (dependency solving, request/response
wrapping) costs more CPU than everything the broker itself does per webhook. Errors still go
through the app's one exception handler, and the operation is documented in OpenAPI by
:mod:`event_broker.openapi`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from event_broker.auth import AuthMethod
from event_broker.deps import broker_from_scope
from event_broker.errors import BrokerError, as_broker_error, error_body, error_headers
from event_broker.runtime import Broker
from event_broker.webhook import (
    PASSPHRASE_FIELD,
    check_content_type,
    check_declared_length,
    decode_object,
    read_bounded,
    request_headers,
    validate_event,
)
from event_queue import EnqueueResult, QueueUnavailable
from event_queue.accounts import AccountDisabled, UnknownAccount

log = logging.getLogger("event_broker.events")

WEBHOOK_ID_NAMESPACE = "webhook:"
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Trace:
    """What is known about a request so far, for its log line (never a credential)."""

    started: float
    client: str | None
    auth: AuthMethod | None = None
    webhook_id: str | None = None
    account_id: str | None = None  # set once the body is valid
    exec_command: str | None = None


class EventsEndpoint:
    """The ASGI endpoint behind ``POST /events``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside the FastAPI router: refusals are raised for the app's exception handler."""
        broker = broker_from_scope(scope)
        trace = _trace(scope)
        try:
            result = await self._ingest(scope, receive, broker, trace)
        except BrokerError:
            raise
        except Exception:
            _record(broker, trace, "error", 500, detail="internal error")
            raise
        await _answer(send, broker, trace, result)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one webhook completely, refusals included (the app's fast path)."""
        broker = broker_from_scope(scope)
        trace = _trace(scope)
        try:
            result = await self._ingest(scope, receive, broker, trace)
        except BrokerError as error:
            await _refuse(send, broker, error)
            return
        except Exception:
            log.exception("webhook failed", extra={"fields": {"client": trace.client}})
            _record(broker, trace, "error", 500, detail="internal error")
            await _send_json(send, 500, {"status": "error", "error": "error",
                                         "detail": "internal error"})
            return
        await _answer(send, broker, trace, result)

    @staticmethod
    async def _ingest(scope: Scope, receive: Receive, broker: Broker, trace: Trace) -> EnqueueResult:
        try:
            return await _ingest(scope, receive, broker, trace)
        except (BrokerError, QueueUnavailable, UnknownAccount, AccountDisabled) as exc:
            error = as_broker_error(exc)
            _record(broker, trace, error.outcome, error.status, detail=error.detail)
            raise error from None


ENDPOINT = EventsEndpoint()
router = APIRouter(tags=["events"])
# Other methods on /events get FastAPI's 405 through this route; POSTs are answered by the app's
# fast path (event_broker.app.BrokerApp) before they reach it.
router.routes.append(Route("/events", ENDPOINT, methods=["POST"], include_in_schema=False))


def _trace(scope: Scope) -> Trace:
    client = scope.get("client")
    return Trace(started=time.perf_counter(), client=client[0] if client else None)


async def _refuse(send: Send, broker: Broker, error: BrokerError) -> None:
    headers = error_headers(error, broker.settings.retry_after_seconds)
    await _send_json(send, error.status, error_body(error), headers)


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> None:
    encoded = orjson.dumps(body)
    raw = [*_JSON_HEADERS, (b"content-length", str(len(encoded)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": encoded})


async def _ingest(scope: Scope, receive: Receive, broker: Broker, trace: Trace) -> EnqueueResult:
    headers = request_headers(scope)
    limit = broker.settings.max_body_bytes
    broker.auth.sources.check(trace.client, headers.get("x-forwarded-for"))
    check_declared_length(headers.get("content-length"), limit)
    check_content_type(headers.get("content-type"))
    body = await read_bounded(receive, limit)
    by_header = broker.auth.from_headers(headers, body, now=time.time())
    payload = decode_object(body, authenticated=by_header is not None)
    passphrase = payload.pop(PASSPHRASE_FIELD, None)  # gone before validation, storage and logs
    trace.auth, trace.webhook_id = by_header or (broker.auth.from_passphrase(passphrase), None)
    event_request = validate_event(payload)
    trace.account_id, trace.exec_command = event_request.account_id, event_request.exec_command
    event = event_request.to_new_event(broker.accounts)
    idempotency_key = WEBHOOK_ID_NAMESPACE + trace.webhook_id if trace.webhook_id else None
    return await broker.batcher.enqueue(event, idempotency_key=idempotency_key)


async def _answer(send: Send, broker: Broker, trace: Trace, result: EnqueueResult) -> None:
    body: dict[str, Any]
    if result.duplicate:
        outcome, status = "duplicate", 200
        body = {"status": outcome, "event_id": result.event_id, "dedup_key": result.dedup_key}
    else:
        outcome, status = "queued", 202
        body = {"status": outcome, "event_id": result.event_id, "dedup_key": result.dedup_key,
                "times_queued": result.times_queued}
    await _send_json(send, status, body)
    _record(broker, trace, outcome, status, event_id=result.event_id, dedup_key=result.dedup_key)


def _record(broker: Broker, trace: Trace, outcome: str, status: int, **extra: str) -> None:
    elapsed = time.perf_counter() - trace.started
    broker.metrics.observe(outcome, elapsed)
    fields: dict[str, Any] = {"method": "POST", "path": "/events",
                              "outcome": outcome, "status": status, "client": trace.client,
                              "auth": trace.auth, "duration_ms": round(elapsed * 1000, 3), **extra}
    if trace.account_id is not None:
        fields["account_id"] = trace.account_id
        fields["exec_command"] = trace.exec_command
    if trace.webhook_id is not None:
        fields["webhook_id"] = trace.webhook_id
    log.log(logging.WARNING if status >= 500 else logging.INFO, "webhook %s", outcome,
            extra={"fields": fields})
