"""``GET /health`` for uptime monitors and ``GET /health/live`` for container liveness."""

from __future__ import annotations

import json
import logging
import time
from typing import cast

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from management_service.access_log import log_request
from management_service.deps import Services, ServicesDep
from management_service.health import check_health
from management_service.schemas import HealthOut, LiveOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

HEALTH_MEDIA_TYPE = "application/health+json"
_NO_STORE = {"Cache-Control": "no-store"}


class HealthResponse(JSONResponse):
    """JSON in the health-check draft's media type; as the route's response class, it is also
    the content type OpenAPI documents for these endpoints."""

    media_type = HEALTH_MEDIA_TYPE


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Pipeline health for uptime monitors",
    response_class=HealthResponse,
    responses={503: {"model": HealthOut, "description": "unhealthy, or error (Redis unreachable)"}},
)
async def health(services: ServicesDep) -> Response:
    """200 when no event has ``times_queued > 1`` (and the other checks pass), else 503.

    Never scans the queue: a handful of O(1) Redis reads, bounded by ``health.timeout_seconds``.
    """
    status_code, body = await health_answer(services)
    return Response(body, status_code=status_code, headers=_NO_STORE, media_type=HEALTH_MEDIA_TYPE)


async def health_answer(services: Services) -> tuple[int, bytes]:
    """``GET /health``'s status and body; the app's fast path answers with them too."""
    report = await check_health(services.manager.queue, services.settings.health)
    status_code = 200 if report.status == "healthy" else 503
    if report.events_requeued is not None:  # serialised by pydantic's core, straight to bytes
        return status_code, report.model_dump_json(by_alias=True, exclude_none=True).encode()
    body = report.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["events_requeued"] = None  # unknown (Redis unreachable): null, never absent
    return status_code, json.dumps(body, separators=(",", ":")).encode()


async def answer_health(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``GET /health`` without the framework's routing and middleware stack: uptime
    monitors poll it, so its cost is mostly what every request pays there. Same answer as the
    route (which documents it in OpenAPI), same access log line; an unexpected error is a 500."""
    started = time.perf_counter()
    status_code = 500
    try:
        services = cast(Services, scope["state"]["services"])
        status_code, body = await health_answer(services)
        headers = [(b"content-type", HEALTH_MEDIA_TYPE.encode()),
                   (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    except Exception:
        log.exception("health check failed")
        body = b'{"detail":"internal error"}'
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    try:
        await send({"type": "http.response.start", "status": status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    finally:
        log_request(scope, status_code, started)


@router.get("/health/live", response_model=LiveOut, response_class=HealthResponse,
            summary="Liveness: depends on nothing")
async def live() -> JSONResponse:
    """Always 200 while the process serves HTTP; container healthchecks use this one."""
    return HealthResponse({"status": "alive"}, headers=_NO_STORE)
