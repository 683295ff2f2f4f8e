"""``/queue/events``: list, show, add, delete and retry events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from event_queue.requests import EventRequest
from management_service.bodies import StrictJsonRoute
from management_service.deps import READ_ACCESS, ManagerDep, OperatorDep, Services, ServicesDep
from management_service.fast_paths import JSON_HEADERS, Headers, as_response
from management_service.queue_manager import EventFilters
from management_service.schemas import (
    NEEDS_KEY,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    DeletedOut,
    EnqueuedOut,
    EventDetail,
    EventList,
    EventOut,
    conflict,
    json_response,
)

router = APIRouter(prefix="/queue/events", tags=["events"], dependencies=[READ_ACCESS],
                   route_class=StrictJsonRoute)

EventId = Annotated[str, Path(min_length=1, max_length=128, description="the event's id")]


@router.get("", response_model=EventList, responses=UNAVAILABLE)
async def list_events(services: ServicesDep,
                      filters: Annotated[EventFilters, Query()]) -> Response:
    """Events oldest first, with their retry counts and last errors."""
    return as_response(*await list_answer(services, filters))


async def list_answer(services: Services, filters: EventFilters) -> tuple[int, bytes, Headers]:
    """``GET /queue/events``'s answer; the app's fast path answers with it too."""
    page = await services.manager.list_events(filters)
    return 200, EventList.json_of(page), JSON_HEADERS


@router.get("/{event_id}", response_model=EventDetail, responses=NOT_FOUND | UNAVAILABLE)
async def get_event(manager: ManagerDep, event_id: EventId) -> Response:
    """One event, live or finished (completed or deleted, kept for the retention): its
    parameters, its timeline (received, queued, every attempt with its processor, duration and
    error, operator retries, completed or deleted and by whom) and the result of its run."""
    return json_response(EventDetail.of(await manager.get_event(event_id)))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EnqueuedOut,
    responses=NEEDS_KEY | TOO_LARGE | UNAVAILABLE
    | conflict("already active; existing_event_id names it"),
)
async def add_event(manager: ManagerDep, operator: OperatorDep, body: EventRequest) -> EnqueuedOut:
    """Add an event, validated exactly as the broker validates a webhook."""
    event_id = await manager.add_event(body, operator)
    return EnqueuedOut(event_id=event_id, dedup_key=f"{body.account_id}:{body.exec_command.value}")


@router.delete(
    "/{event_id}",
    response_model=DeletedOut,
    responses=NEEDS_KEY | NOT_FOUND | UNAVAILABLE | conflict("a processor holds the event now"),
)
async def delete_event(manager: ManagerDep, operator: OperatorDep, event_id: EventId) -> DeletedOut:
    """Remove an event and its dedup key atomically (refused while it is being processed)."""
    return DeletedOut(deleted=EventOut.of(await manager.delete_event(event_id, operator)))


@router.post(
    "/{event_id}/retry",
    response_model=EventDetail,
    responses=NEEDS_KEY | NOT_FOUND | UNAVAILABLE | conflict("the event is not waiting for a retry"),
)
async def retry_event(manager: ManagerDep, operator: OperatorDep, event_id: EventId) -> EventDetail:
    """Send a retry-waiting event to the head of the queue now (times_queued unchanged)."""
    return EventDetail.of(await manager.retry_event(event_id, operator))
