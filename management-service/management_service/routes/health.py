"""``GET /health`` for uptime monitors and ``GET /health/live`` for container liveness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from management_service.deps import Services, ServicesDep
from management_service.fast_paths import Headers, as_response
from management_service.health import check_health
from management_service.schemas import HealthOut, LiveOut

router = APIRouter(tags=["health"])

HEALTH_MEDIA_TYPE = "application/health+json"
_NO_STORE = {"Cache-Control": "no-store"}
_HEALTH_HEADERS: Headers = [(b"content-type", HEALTH_MEDIA_TYPE.encode()),
                            (b"cache-control", b"no-store")]


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

    Never scans the queue: one O(1) Redis script, bounded by ``health.timeout_seconds``.
    """
    return as_response(*await health_answer(services))


async def health_answer(services: Services) -> tuple[int, bytes, Headers]:
    """``GET /health``'s status, body and headers; the app's fast path answers with them too."""
    report = await check_health(services.manager.queue, services.settings.health)
    status_code = 200 if report.status == "healthy" else 503
    return status_code, HealthOut.json_of(report), _HEALTH_HEADERS


@router.get("/health/live", response_model=LiveOut, response_class=HealthResponse,
            summary="Liveness: depends on nothing")
async def live() -> JSONResponse:
    """Always 200 while the process serves HTTP; container healthchecks use this one."""
    return HealthResponse({"status": "alive"}, headers=_NO_STORE)
