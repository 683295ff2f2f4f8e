"""Response bodies of the HTTP API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from event_queue import Event, EventPage, EventSummary, ProcessorInfo


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class EventOut(_Out):
    """One event as listed: what it is, where it is, and why it last failed."""

    event_id: str
    account_id: str
    exec_command: str
    dedup_key: str
    times_queued: int
    state: str
    created_at: datetime
    last_error: str | None
    next_attempt_at: datetime | None
    consumer: str | None = Field(description="the processor holding it while processing")
    malformed: str | None = Field(description="why the stored record did not decode, if it did not")

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(**_listed_fields(event))


class EventDetail(EventOut):
    """One event with its parameters and the result of its last run."""

    data: dict[str, Any]
    result: Any = None
    idempotency_key: str | None

    @classmethod
    def of(cls, event: Event) -> EventDetail:
        return cls(
            **_listed_fields(event),
            data=event.data,
            result=event.result,
            idempotency_key=event.idempotency_key,
        )


def _listed_fields(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "account_id": event.account_id,
        "exec_command": event.exec_command,
        "dedup_key": event.dedup_key,
        "times_queued": event.times_queued,
        "state": event.state.value,
        "created_at": event.created_at,
        "last_error": event.last_error,
        "next_attempt_at": event.next_attempt_at,
        "consumer": event.consumer,
        "malformed": event.malformed,
    }


class EventList(_Out):
    """A page of events and how many match the filters."""

    events: list[EventOut]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: EventPage) -> EventList:
        return cls(
            events=[EventOut.of(e) for e in page.events],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )


class EventBrief(_Out):
    """The few fields of an event shown in the status and health answers."""

    event_id: str
    account_id: str
    exec_command: str
    times_queued: int
    state: str
    created_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, summary: EventSummary) -> EventBrief:
        return cls(
            event_id=summary.event_id,
            account_id=summary.account_id,
            exec_command=summary.exec_command,
            times_queued=summary.times_queued,
            state=summary.state,
            created_at=summary.created_at,
            last_error=summary.last_error,
        )


class ProcessorOut(_Out):
    """A processor that sent a heartbeat within the configured window."""

    consumer_id: str
    last_heartbeat: datetime
    age_seconds: float
    info: dict[str, Any]

    @classmethod
    def of(cls, processor: ProcessorInfo) -> ProcessorOut:
        return cls(
            consumer_id=processor.consumer_id,
            last_heartbeat=processor.last_heartbeat,
            age_seconds=round(processor.age_seconds, 3),
            info=processor.info,
        )


class QueueStatusOut(_Out):
    """Counts, the oldest waiting event and the live processors (read without scanning)."""

    queue_length: int = Field(description="events ready in rebalance_queue")
    processing: int = Field(description="events claimed by a processor")
    retry_waiting: int = Field(description="events waiting for their requeue delay")
    active_events_count: int = Field(description="dedup keys in active_events")
    events_requeued: int = Field(description="events with times_queued > 1")
    total_events: int
    oldest_event: EventBrief | None = Field(description="the oldest event not being processed")
    oldest_event_age_seconds: float | None
    processors: list[ProcessorOut]
    processor_window_seconds: float
    redis_time: datetime
    redis_memory_used_bytes: int = Field(description="Redis's used_memory")
    redis_memory_limit_bytes: int = Field(
        description="Redis's maxmemory (0: no limit); when reached, new events are refused")
    consistent: bool = Field(
        description="every live event sits in exactly one area and owns one dedup key "
        "(total_events = queue_length + processing + retry_waiting = active_events_count); "
        "when false, see inconsistencies and POST /queue/repair")
    inconsistencies: list[str] = Field(description="what the counts say is wrong")


class RepairOut(_Out):
    """What ``POST /queue/repair`` examined and fixed."""

    examined: int = Field(description="event ids found in records, areas and indexes")
    fixed: int = Field(description="fixes made")
    fixes: dict[str, list[str]] = Field(description="the fixes made, by event id")
    general: list[str] = Field(description="fixes of the dedup key set")
    consistent: bool = Field(description="the O(1) consistency check after the repair")
    inconsistencies: list[str]


class CheckOut(_Out):
    """One health check, in the style of the IETF health-check draft."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    status: Literal["pass", "fail"]
    observed_value: int | float | bool | None = Field(default=None, alias="observedValue")
    observed_unit: str | None = Field(default=None, alias="observedUnit")
    output: str | None = None
    offending_events: list[EventBrief] | None = None
    time: datetime | None = None


class HealthOut(_Out):
    """``GET /health``: 200 when ``status`` is healthy, 503 when unhealthy or error."""

    status: Literal["healthy", "unhealthy", "error"]
    events_requeued: int | None
    checks: dict[str, CheckOut]
    time: datetime


class LiveOut(_Out):
    """``GET /health/live``: the process answers; nothing else is checked."""

    status: Literal["alive"] = "alive"


class EnqueuedOut(_Out):
    """A manually added event."""

    event_id: str
    dedup_key: str
    duplicate: Literal[False] = False


class DeletedOut(_Out):
    """The event that was deleted, as it was."""

    deleted: EventOut


class AuditOut(_Out):
    """Operator actions, newest first."""

    entries: list[dict[str, Any]]
    limit: int


class HistoryOut(_Out):
    """Recently finished events, newest first (a capped list: the most recent ones only)."""

    entries: list[dict[str, Any]] = Field(
        description="event_id, account_id, exec_command, times_queued, created_at, outcome "
        "(completed or deleted), finished_at, and the command's result or who deleted it")
    limit: int


class ErrorOut(_Out):
    """An error: ``detail`` says what went wrong; the other fields carry its data."""

    detail: str | list[dict[str, Any]]
    event_id: str | None = None
    state: str | None = None
    existing_event_id: str | None = None
    dedup_key: str | None = None


Responses = dict[int | str, dict[str, Any]]

UNAVAILABLE: Responses = {503: {"model": ErrorOut, "description": "Redis unreachable"}}
NEEDS_KEY: Responses = {
    401: {"model": ErrorOut, "description": "API key missing or wrong"},
    403: {"model": ErrorOut, "description": "mutations disabled: MANAGEMENT_API_KEY is not set"},
}
NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no live event has this id"}}
TOO_LARGE: Responses = {413: {"model": ErrorOut,
                              "description": "the body is larger than max_body_bytes"}}


def conflict(description: str) -> Responses:
    """A documented 409 answer."""
    return {409: {"model": ErrorOut, "description": description}}
