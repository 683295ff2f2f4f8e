"""OpenAPI documentation of the webhook.

``POST /events`` reads its body raw (signatures cover the exact bytes), so FastAPI cannot derive
the request schema; it is documented here from the shared :class:`EventRequest` model, plus the
``passphrase`` field that is stripped before validation.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from event_broker.webhook import PASSPHRASE_FIELD
from event_queue.requests import EventRequest

_REF = "#/components/schemas/{model}"
BODY_SCHEMA = "WebhookEvent"


class QueuedAnswer(BaseModel):
    """202: the event was queued."""

    status: Literal["queued"]
    event_id: str
    dedup_key: str = Field(examples=["DU1234567:rebalance"])
    times_queued: int = 1


class DuplicateAnswer(BaseModel):
    """200: an event with this dedup key (or this webhook-id) is already active."""

    status: Literal["duplicate"]
    event_id: str = Field(description="the id of the event already active")
    dedup_key: str


class ErrorAnswer(BaseModel):
    """Every refusal: a machine-readable ``error`` and a ``detail`` a person can act on."""

    status: Literal["error"]
    error: str
    detail: str
    errors: list[dict[str, Any]] | None = None


_ANSWERS = (QueuedAnswer, DuplicateAnswer, ErrorAnswer)


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


_RESPONSES: dict[str, Any] = {
    "202": _answer(QueuedAnswer, "queued"),
    "200": _answer(DuplicateAnswer, "duplicate of the active event (or of this webhook-id)"),
    "401": _answer(ErrorAnswer, "missing or wrong credentials"),
    "403": _answer(ErrorAnswer, "source address not allowed"),
    "413": _answer(ErrorAnswer, "body over the size limit (64 KiB)"),
    "415": _answer(ErrorAnswer, "not JSON (or text/plain holding JSON)"),
    "422": _answer(ErrorAnswer, "invalid event, unknown or disabled account"),
    "503": {
        **_answer(ErrorAnswer, "queue unreachable; the event may not be queued: resend later"),
        "headers": {"Retry-After": {"schema": {"type": "integer"},
                                    "description": "seconds to wait before resending"}},
    },
}

_HEADER_PARAMS = [
    {"name": "webhook-id", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Standard Webhooks message id; also the idempotency key (24 h)"},
    {"name": "webhook-timestamp", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": "Unix seconds; within 5 minutes of now"},
    {"name": "webhook-signature", "in": "header", "required": False,
     "schema": {"type": "string"},
     "description": "space-separated v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>"},
]

EVENTS_OPERATION: dict[str, Any] = {
    "tags": ["events"],
    "summary": "Receive a webhook and queue its event",
    "description": (
        "Queues one event per `account_id:exec_command` while one is active: 202 when queued, "
        "200 when that command for the account is already active (or the `webhook-id` was seen "
        "in the last 24 h), 4xx when refused, 503 with `Retry-After` when the queue is "
        "unreachable. Authenticate with a Standard Webhooks signature, `Authorization: Bearer "
        "<WEBHOOK_TOKEN>`, or `passphrase` in the body."
    ),
    "operationId": "post_event",
    "parameters": _HEADER_PARAMS,
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model=BODY_SCHEMA)}},
            "text/plain": {"schema": {"type": "string"},
                           "description": "the same JSON object, as TradingView sends it"},
        },
    },
    "responses": _RESPONSES,
    "security": [{"bearerToken": []}, {}],
}


def component_schemas() -> dict[str, Any]:
    """The webhook body and answer schemas, and the shared models they refer to."""
    _, top = models_json_schema(
        [(EventRequest, "validation"), *((m, "serialization") for m in _ANSWERS)],
        ref_template=_REF,
    )
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    body = dict(defs.pop(EventRequest.__name__))
    body["title"] = BODY_SCHEMA
    body["properties"] = {
        **body["properties"],
        PASSPHRASE_FIELD: {
            "type": "string",
            "writeOnly": True,
            "description": "WEBHOOK_TOKEN, for senders that cannot set headers (TradingView); "
                           "removed before the event is validated, stored or logged",
        },
    }
    defs[BODY_SCHEMA] = body
    return defs


def install_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document once, adding ``POST /events`` (a plain ASGI route that
    FastAPI does not document by itself), its schemas and the bearer scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(component_schemas())
            schema.setdefault("paths", {})["/events"] = {"post": EVENTS_OPERATION}
            components["securitySchemes"] = {
                "bearerToken": {"type": "http", "scheme": "bearer",
                                "description": "WEBHOOK_TOKEN"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
