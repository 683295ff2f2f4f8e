"""``GET /queue/status`` (counts, the oldest waiting event, the live processors, Redis memory, the
consistency check), ``GET /queue/history`` (finished events with their results, filtered and in
pages) and ``POST /queue/repair`` (the operator's repair of an inconsistent state)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from event_queue import ExecCommand, HistoryQuery, Outcome
from event_queue.events import ACCOUNT_ID_REGEX
from management_service.bodies import StrictJsonRoute
from management_service.deps import READ_ACCESS, ManagerDep, OperatorDep, Services, ServicesDep
from management_service.fast_paths import JSON_HEADERS, Headers, as_response
from management_service.schemas import (
    NEEDS_KEY,
    UNAVAILABLE,
    EventBrief,
    HistoryOut,
    ProcessorOut,
    QueueStatusOut,
    RepairOut,
    RetentionOut,
)

router = APIRouter(prefix="/queue", tags=["queue"], dependencies=[READ_ACCESS],
                   route_class=StrictJsonRoute)


@router.get(
    "/status",
    response_model=QueueStatusOut,
    responses=UNAVAILABLE,
)
async def queue_status(services: ServicesDep) -> Response:
    """Queue statistics without scanning the queue."""
    return as_response(*await status_answer(services))


async def status_answer(services: Services) -> tuple[int, bytes, Headers]:
    """``GET /queue/status``'s answer; the app's fast path answers with it too."""
    window = services.settings.health.processor_window_seconds
    seen = await services.manager.observe(
        window_seconds=window, timeout=services.settings.health.timeout_seconds
    )
    stats = seen.stats
    status = QueueStatusOut(
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
        finished_events=stats.finished_events,
        retention=RetentionOut.of(services.settings.retention),
    )
    return 200, status.model_dump_json(by_alias=True).encode(), JSON_HEADERS


Cursor = Annotated[str | None, Query(min_length=1, max_length=512)]


@router.get("/history", response_model=HistoryOut, responses=UNAVAILABLE)
async def queue_history(
    services: ServicesDep,
    account_id: Annotated[str | None, Query(pattern=ACCOUNT_ID_REGEX)] = None,
    exec_command: Annotated[ExecCommand | None, Query()] = None,
    outcome: Annotated[Outcome | None, Query(description="completed or deleted")] = None,
    since: Annotated[datetime | None, Query(
        description="finished at or after (ISO 8601; without a zone: UTC)")] = None,
    until: Annotated[datetime | None, Query(
        description="finished before (ISO 8601; without a zone: UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[Cursor, Query(description="a page's `older`: the next older page")] = None,
    after: Annotated[Cursor, Query(description="a page's `newer`: the next newer page")] = None,
) -> HistoryOut:
    """Finished events, newest first: each completed event with its command's result (orders,
    positions, ...), each deleted one with the operator who deleted it. Records are kept for
    the retention (`retention`: a count and an age). Filters combine; pages follow each other
    through the `older` and `newer` cursors."""
    query = _history_query(account_id=account_id, exec_command=exec_command, outcome=outcome,
                           since=_utc(since), until=_utc(until), limit=limit, before=before,
                           after=after)
    page = await services.manager.history(query)
    return HistoryOut.of(page, services.settings.retention)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _history_query(**fields: object) -> HistoryQuery:
    try:
        return HistoryQuery(**fields)  # type: ignore[arg-type]
    except ValueError as exc:
        where = "after" if "before or after" in str(exc) else "until"
        raise RequestValidationError([{"loc": ("query", where), "msg": str(exc),
                                       "type": "value_error"}]) from None


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
