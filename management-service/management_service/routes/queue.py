"""``GET /queue/status`` (counts, the oldest waiting event, the live processors, Redis memory, the
consistency check), ``GET /queue/history`` (recently finished events with their results) and
``POST /queue/repair`` (the operator's repair of an inconsistent state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from management_service.bodies import StrictJsonRoute
from management_service.deps import READ_ACCESS, ManagerDep, OperatorDep, ServicesDep
from management_service.schemas import (
    NEEDS_KEY,
    UNAVAILABLE,
    EventBrief,
    HistoryOut,
    ProcessorOut,
    QueueStatusOut,
    RepairOut,
)

router = APIRouter(prefix="/queue", tags=["queue"], dependencies=[READ_ACCESS],
                   route_class=StrictJsonRoute)


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
        consistent=not stats.inconsistencies,
        inconsistencies=stats.inconsistencies,
    )


@router.get("/history", response_model=HistoryOut, responses=UNAVAILABLE)
async def queue_history(
    manager: ManagerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> HistoryOut:
    """Finished events, newest first: each completed event with its command's result (orders,
    positions, ...), each deleted one with who deleted it. The list keeps the latest 1000."""
    return HistoryOut(entries=await manager.history(limit), limit=limit)


@router.post("/repair", response_model=RepairOut, responses=NEEDS_KEY | UNAVAILABLE)
async def queue_repair(manager: ManagerDep, operator: OperatorDep) -> RepairOut:
    """Repair whatever the consistency check found: an event in no area goes back to the queue
    (nothing is ever dropped), an event placed twice keeps one place, a missing dedup key or
    index entry is restored, an id or dedup key without a record is removed. Each event is fixed
    by one atomic script, so processors and the broker may keep running. It reads the whole queue
    state: run it when `consistent` is false, not on a schedule."""
    report = await manager.repair(operator)
    stats = await manager.queue.stats(sample_size=1)
    return RepairOut(examined=report.examined, fixed=report.fixed, fixes=report.fixes,
                     general=report.general, consistent=not stats.inconsistencies,
                     inconsistencies=stats.inconsistencies)
