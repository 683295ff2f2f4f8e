"""``GET /queue/status``: counts, the oldest waiting event and the live processors."""

from __future__ import annotations

from fastapi import APIRouter

from management_service.deps import READ_ACCESS, ServicesDep
from management_service.schemas import UNAVAILABLE, EventBrief, ProcessorOut, QueueStatusOut

router = APIRouter(prefix="/queue", tags=["queue"], dependencies=[READ_ACCESS])


@router.get(
    "/status",
    response_model=QueueStatusOut,
    responses=UNAVAILABLE,
)
async def queue_status(services: ServicesDep) -> QueueStatusOut:
    """Queue statistics without scanning the queue."""
    window = services.settings.health.processor_window_seconds
    seen = await services.manager.observe(
        window_seconds=window, timeout=services.settings.health.timeout_seconds
    )
    stats = seen.stats
    return QueueStatusOut(
        queue_length=stats.queue_length,
        processing=stats.processing,
        retry_waiting=stats.retry_waiting,
        active_events_count=stats.active_events,
        events_requeued=stats.events_requeued,
        total_events=stats.total_events,
        oldest_event=EventBrief.of(stats.oldest_event) if stats.oldest_event else None,
        oldest_event_age_seconds=stats.oldest_event_age_seconds,
        processors=[ProcessorOut.of(p) for p in seen.processors],
        processor_window_seconds=window,
        redis_time=stats.redis_time,
    )
