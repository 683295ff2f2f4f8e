"""``GET /metrics``: Prometheus gauges from the same O(1) statistics as ``/health``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from event_queue import QueueUnavailable
from management_service.deps import ServicesDep
from management_service.health import evaluate
from management_service.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(services: ServicesDep) -> Response:
    """Queue gauges, ``management_redis_up`` and ``management_healthy``; 200 even when Redis is down."""
    health = services.settings.health
    try:
        seen = await services.manager.observe(
            window_seconds=health.processor_window_seconds, timeout=health.timeout_seconds
        )
    except QueueUnavailable:
        services.metrics.unavailable()
    else:
        services.metrics.observed(seen, evaluate(seen, health))
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
