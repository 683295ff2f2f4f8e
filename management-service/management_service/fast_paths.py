"""The GET endpoints that monitors and dashboards poll, answered before the framework's stack.

``GET /health`` (uptime monitors), ``GET /queue/status`` and ``GET /queue/events`` (dashboards,
scripts) cost little themselves: most of a request's time was FastAPI's middleware, router and
dependency solving. :class:`management_service.app.ManagementApp` answers them here with the same
bodies, headers, error answers and access log line as their routes, which stay registered and
document them in OpenAPI. A request the fast path would refuse goes the long way, so its error
and its log line come from the one place that makes them: a missing or wrong API key (401/403),
and query parameters that do not validate, or that are repeated or blank (422 or FastAPI's own
reading of them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from management_service.access_log import log_request
from management_service.deps import Access, Services, key_problem
from management_service.errors import STATUS, error_body

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
# The answer's maker takes the services, and the validated query when the path has one.
Answer = Callable[..., Awaitable[tuple[int, bytes, Headers]]]


def as_response(status: int, body: bytes, headers: Headers) -> Response:
    """An answer as a framework Response, for the route that documents the endpoint."""
    response = Response(body, status_code=status)
    response.headers.update({k.decode(): v.decode() for k, v in headers})
    return response


@dataclass(frozen=True)
class FastPath:
    """One GET endpoint: who may read it (None: anyone), what makes its answer and, when it
    takes query parameters, the model that validates them (as the route's ``Query`` fields do)."""

    access: Access | None
    answer: Answer
    query: type[BaseModel] | None = None


def parse_query(scope: Scope, model: type[BaseModel]) -> BaseModel | None:
    """The query string validated by ``model``; None when the framework must read it instead.

    The string is split as Starlette splits it; unknown parameters are ignored, as FastAPI
    ignores them. A repeated or blank parameter, or a value the model refuses, gives None, so
    the route answers it (with its 422) exactly as it always has.
    """
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    values = dict(pairs)
    if len(values) != len(pairs) or "" in values.values():
        return None
    try:
        return model.model_validate(values)
    except ValidationError:
        return None


def permitted(scope: Scope, services: Services, access: Access | None) -> bool:
    """True when the request carries what ``access`` needs (nothing is logged here)."""
    if access is None:
        return True
    wanted = services.settings.api_key_header.lower().encode()
    presented = next((v for k, v in scope["headers"] if k == wanted), None)
    text = None if presented is None else presented.decode("latin-1")
    return key_problem(services.settings, access, text) is None


async def serve(path: FastPath, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer the request; False (nothing sent) when it must go through the framework."""
    started = time.perf_counter()
    services = cast(Services, scope["state"]["services"])
    if not permitted(scope, services, path.access):
        return False
    arguments: tuple[Any, ...] = ()
    if path.query is not None:
        query = parse_query(scope, path.query)
        if query is None:
            return False
        arguments = (query,)
    status = 500
    try:
        status, body, headers = await path.answer(services, *arguments)
    except Exception as exc:  # the same answers as errors.handle_error, or a plain 500
        known = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), None)
        if known is None:
            log.exception("request failed", extra={"fields": {"path": scope["path"]}})
            status, body = 500, b'{"detail":"internal error"}'
        else:
            if known == 503:
                log.warning("request failed: %s", exc, extra={"fields": {"path": scope["path"]}})
            status, body = known, json.dumps(error_body(exc), separators=(",", ":")).encode()
        headers = JSON_HEADERS
    try:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    finally:
        log_request(scope, status, started)
    return True
