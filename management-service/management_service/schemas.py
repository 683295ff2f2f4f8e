"""Response bodies of the HTTP API (they are also its OpenAPI documentation)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from event_queue import (
    Event,
    EventSummary,
    FinishedEvent,
    HistoryPage,
    ListedEvent,
    ListedPage,
    ProcessorInfo,
    Retention,
)
from event_queue.timeline import Step

if TYPE_CHECKING:
    from management_service.health import Check, Report

EventStateOut = Literal["queued", "processing", "retry_wait", "completed", "deleted"]


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """``body`` as the JSON its route documents, serialised once by pydantic's core. (Returned
    as a model, FastAPI would validate it a second time against the route's response model before
    serialising it: for a page of 100 events, most of the request's time.)"""
    return Response(body.model_dump_json(by_alias=True), status_code=status_code,
                    media_type="application/json")


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
        return cls(**_listed_fields(ListedEvent.of(event)))


class TimelineStepOut(_Out):
    """One step of an event's timeline."""

    at: datetime | None = Field(description="when; for an attempt, when it was claimed")
    step: Literal["received", "queued", "attempt", "retried", "completed", "deleted"]
    attempt: int | None = Field(default=None, description="the attempt's number (1, 2, ...)")
    consumer: str | None = Field(default=None, description="the processor of the attempt")
    duration_ms: int | None = Field(default=None, description="how long the attempt took")
    outcome: Literal["running", "completed", "failed", "handed_back", "lease_expired"] | None = (
        Field(default=None, description="how the attempt ended: handed_back = given back on a "
              "processor's stop (not counted as a failure); lease_expired = its processor was "
              "lost and the reaper requeued it"))
    error: str | None = Field(default=None, description="why the attempt failed (its first "
                              "500 characters)")
    next_attempt_at: datetime | None = Field(
        default=None, description="after a failed attempt: when it was due again")
    by: str | None = Field(default=None, description="who: the operator's address (queued by "
                           "hand, retried, deleted) or the processor (completed)")
    late: bool = Field(default=False, description="completed after its lease had expired (the "
                       "work was done, so the event was not run again)")

    @classmethod
    def of(cls, step: Step) -> TimelineStepOut:
        return cls.model_validate(step, from_attributes=True)


class EventDetail(EventOut):
    """One event, live or finished: its parameters, its timeline and the result of its run."""

    state: EventStateOut
    data: dict[str, Any]
    result: Any = None
    idempotency_key: str | None
    attempts: int = Field(description="how many times a processor claimed it")
    finished_at: datetime | None = Field(description="when it completed or was deleted")
    finished_by: str | None = Field(
        description="the processor that completed it, or the operator's address that deleted it")
    timeline: list[TimelineStepOut]
    timeline_steps_dropped: int = Field(
        description="earlier steps no longer kept (an event failing for days keeps its latest "
        "ones)")

    @classmethod
    def of(cls, event: Event | FinishedEvent) -> EventDetail:
        if isinstance(event, FinishedEvent):
            return cls._finished(event)
        return cls(
            **_listed_fields(ListedEvent.of(event)),
            data=event.data,
            result=event.result,
            idempotency_key=event.idempotency_key,
            attempts=event.attempts,
            finished_at=None,
            finished_by=None,
            timeline=[TimelineStepOut.of(s) for s in event.timeline()],
            timeline_steps_dropped=event.steps_dropped,
        )

    @classmethod
    def _finished(cls, event: FinishedEvent) -> EventDetail:
        return cls(
            event_id=event.event_id, account_id=event.account_id,
            exec_command=event.exec_command, dedup_key=event.dedup_key,
            times_queued=event.times_queued, state=event.state,
            created_at=event.created_at or event.finished_at, last_error=event.last_error,
            next_attempt_at=None, consumer=None, malformed=event.malformed, data=event.data,
            result=event.result, idempotency_key=event.idempotency_key,
            attempts=event.attempts, finished_at=event.finished_at,
            finished_by=event.finished_by,
            timeline=[TimelineStepOut.of(s) for s in event.timeline()],
            timeline_steps_dropped=event.steps_dropped,
        )


def _listed_fields(listed: ListedEvent) -> dict[str, Any]:
    return {
        "event_id": listed.event_id,
        "account_id": listed.account_id,
        "exec_command": listed.exec_command,
        "dedup_key": listed.dedup_key,
        "times_queued": listed.times_queued,
        "state": listed.state.value,
        "created_at": listed.created_at,
        "last_error": listed.last_error,
        "next_attempt_at": listed.next_attempt_at,
        "consumer": listed.consumer,
        "malformed": listed.malformed,
    }


class EventList(_Out):
    """A page of events and how many match the filters."""

    events: list[EventOut]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: ListedPage) -> EventList:
        return cls(
            events=[EventOut(**_listed_fields(e)) for e in page.events],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )

    @classmethod
    def json_of(cls, page: ListedPage) -> bytes:
        """``EventList.of(page).model_dump_json()``, byte for byte (tested), written by orjson
        straight from the page's dataclasses (whose fields are EventOut's, in its order): for
        100 events, a tenth of the time. What orjson refuses (an integer beyond 64 bits) is
        written the pydantic way."""
        try:
            return orjson.dumps({"events": page.events, "total": page.total,
                                 "limit": page.limit, "offset": page.offset},
                                option=orjson.OPT_UTC_Z)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return cls.of(page).model_dump_json(by_alias=True).encode()


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
    finished_events: int = Field(
        description="finished (completed or deleted) events whose record is kept")
    retention: RetentionOut


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

    @classmethod
    def of(cls, check: Check) -> CheckOut:
        events = check.offending_events
        return cls(status=check.status, observed_value=check.observed_value,
                   observed_unit=check.observed_unit, output=check.output,
                   offending_events=None if events is None else [EventBrief.of(e) for e in events],
                   time=check.time)


class HealthOut(_Out):
    """``GET /health``: 200 when ``status`` is healthy, 503 when unhealthy or error."""

    status: Literal["healthy", "unhealthy", "error"]
    events_requeued: int | None
    checks: dict[str, CheckOut]
    time: datetime

    @classmethod
    def of(cls, report: Report) -> HealthOut:
        return cls(status=report.status, events_requeued=report.events_requeued,
                   checks={name: CheckOut.of(c) for name, c in report.checks.items()},
                   time=report.time)

    def body(self) -> bytes:
        """The JSON ``GET /health`` answers: by alias, without null fields, except
        ``events_requeued``, which is null when unknown (Redis unreachable), never absent."""
        if self.events_requeued is not None:
            return self.model_dump_json(by_alias=True, exclude_none=True).encode()
        fields = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        fields = {"status": fields.pop("status"), "events_requeued": None, **fields}
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def json_of(cls, report: Report) -> bytes:
        """``HealthOut.of(report).body()``, byte for byte (tested), written by orjson from the
        report's plain values: building and serialising the models took about a sixth of a
        ``GET /health``. What orjson refuses (an integer beyond 64 bits) goes the pydantic way."""
        try:
            return orjson.dumps({"status": report.status, "events_requeued": report.events_requeued,
                                 "checks": {name: _check_fields(check)
                                            for name, check in report.checks.items()},
                                 "time": report.time}, option=orjson.OPT_UTC_Z)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return cls.of(report).body()


def _check_fields(check: Check) -> dict[str, Any]:
    """A check as CheckOut writes it: its fields by alias, in its order, without null ones; the
    offending events as EventBrief writes them."""
    fields: dict[str, Any] = {}
    for name, key in _CHECK_KEYS:
        value = getattr(check, name)
        if value is None:
            continue
        if name == "offending_events":
            value = [{field: v for field in _BRIEF_FIELDS if (v := getattr(e, field)) is not None}
                     for e in value]
        fields[key] = value
    return fields


# The documented models' fields (an EventSummary has EventBrief's): one list for both writers.
_CHECK_KEYS = tuple((name, info.alias or name) for name, info in CheckOut.model_fields.items())
_BRIEF_FIELDS = tuple(EventBrief.model_fields)


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


class RetentionOut(_Out):
    """How long finished events keep their record."""

    max_events: int
    max_age_days: float

    @classmethod
    def of(cls, retention: Retention) -> RetentionOut:
        return cls(max_events=retention.max_events,
                   max_age_days=round(retention.max_age_seconds / 86400, 6))


class AuditOut(_Out):
    """Operator actions, newest first."""

    entries: list[dict[str, Any]]
    limit: int


class HistoryEntryOut(_Out):
    """A finished event, as listed (``GET /queue/events/{id}`` adds its parameters and
    timeline)."""

    event_id: str
    account_id: str
    exec_command: str
    outcome: Literal["completed", "deleted"]
    times_queued: int
    attempts: int
    created_at: datetime | None
    finished_at: datetime | None
    finished_by: str | None = Field(
        description="the processor that completed it, or the operator's address that deleted it")
    last_error: str | None
    result: Any = Field(default=None, description="the command's result (a completed event)")
    malformed: str | None = Field(description="why the stored record did not decode, if so")

    @classmethod
    def of(cls, event: FinishedEvent) -> HistoryEntryOut:
        return cls(
            event_id=event.event_id, account_id=event.account_id,
            exec_command=event.exec_command, outcome=event.outcome.value,
            times_queued=event.times_queued, attempts=event.attempts,
            created_at=event.created_at, finished_at=event.finished_at,
            finished_by=event.finished_by, last_error=event.last_error, result=event.result,
            malformed=event.malformed)


class HistoryOut(_Out):
    """A page of finished events, newest first."""

    entries: list[HistoryEntryOut]
    limit: int
    older: str | None = Field(
        description="pass as `before` for the next older page; null: nothing older matches. "
        "A page may hold fewer than `limit` entries while this is set (its walk met its read "
        "budget first): go on")
    newer: str | None = Field(
        description="pass as `after` for the next newer page; null: this is the newest page")
    retention: RetentionOut

    @classmethod
    def of(cls, page: HistoryPage, retention: Retention) -> HistoryOut:
        return cls(entries=[HistoryEntryOut.of(e) for e in page.entries], limit=page.limit,
                   older=page.older, newer=page.newer, retention=RetentionOut.of(retention))


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
NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no event has this id (or "
                               "its record is past the retention)"}}
TOO_LARGE: Responses = {413: {"model": ErrorOut,
                              "description": "the body is larger than max_body_bytes"}}


def conflict(description: str) -> Responses:
    """A documented 409 answer."""
    return {409: {"model": ErrorOut, "description": description}}
