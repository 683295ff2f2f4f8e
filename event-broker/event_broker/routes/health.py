"""Liveness (depends on nothing) and readiness (Redis answers), as ``application/health+json``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from event_broker.deps import QueueDep
from event_queue import QueueUnavailable

router = APIRouter(prefix="/health", tags=["health"])

HEALTH_JSON = "application/health+json"


class HealthResponse(JSONResponse):
    """JSON in the health-check draft's media type, which OpenAPI then documents too."""

    media_type = HEALTH_JSON


@router.get("/live", summary="The process is up (for container healthchecks)",
            response_class=HealthResponse)
async def live() -> JSONResponse:
    """Always ``pass`` while the process serves HTTP; never looks at Redis."""
    return HealthResponse({"status": "pass"})


@router.get(
    "/ready",
    summary="The broker can queue events (Redis answers)",
    response_class=HealthResponse,
    responses={503: {"description": "Redis unreachable",
                     "content": {HEALTH_JSON: {"schema": {"type": "object"}}}}},
)
async def ready(queue: QueueDep) -> JSONResponse:
    """``pass`` (200) when Redis answers a PING, ``fail`` (503) otherwise."""
    try:
        await queue.ping()
    except QueueUnavailable as exc:
        check = {"status": "fail", "output": exc.reason}
        return HealthResponse({"status": "fail", "checks": {"redis:connection": [check]}},
                              status_code=503)
    return HealthResponse({"status": "pass", "checks": {"redis:connection": [{"status": "pass"}]}})
