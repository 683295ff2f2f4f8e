"""Liveness (depends on nothing) and readiness (Redis answers), as ``application/health+json``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from event_broker.deps import QueueDep
from event_queue import QueueUnavailable

router = APIRouter(prefix="/health", tags=["health"])

HEALTH_JSON = "application/health+json"


@router.get("/live", summary="The process is up (for container healthchecks)")
async def live() -> JSONResponse:
    """Always ``pass`` while the process serves HTTP; never looks at Redis."""
    return JSONResponse({"status": "pass"}, media_type=HEALTH_JSON)


@router.get(
    "/ready",
    summary="The broker can queue events (Redis answers)",
    responses={503: {"description": "Redis unreachable"}},
)
async def ready(queue: QueueDep) -> JSONResponse:
    """``pass`` (200) when Redis answers a PING, ``fail`` (503) otherwise."""
    try:
        await queue.ping()
    except QueueUnavailable as exc:
        check = {"status": "fail", "output": exc.reason}
        return JSONResponse({"status": "fail", "checks": {"redis:connection": [check]}},
                            status_code=503, media_type=HEALTH_JSON)
    return JSONResponse({"status": "pass", "checks": {"redis:connection": [{"status": "pass"}]}},
                        media_type=HEALTH_JSON)
