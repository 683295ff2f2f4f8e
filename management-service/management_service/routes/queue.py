"""``GET /queue/status`` (counts, the oldest waiting event, the live processors, Redis memory) and
``GET /queue/history`` (recently finished events with their results)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from management_service.deps import READ_ACCESS, ManagerDep, ServicesDep
from management_service.schemas import (
    UNAVAILABLE,
    EventBrief,
    HistoryOut,
    ProcessorOut,
    QueueStatusOut,
)

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
        redis_memory_used_bytes=stats.memory_used_bytes,
        redis_memory_limit_bytes=stats.memory_limit_bytes,
    )


@router.get("/history", response_model=HistoryOut, responses=UNAVAILABLE)
async def queue_history(
    manager: ManagerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> HistoryOut:
    """Finished events, newest first: each completed event with its command's result (orders,
    positions, ...), each deleted one with who deleted it. The list keeps the latest 1000."""
    return HistoryOut(entries=await manager.history(limit), limit=limit)
