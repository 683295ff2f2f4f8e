"""Value objects returned by the queue client's read operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from event_queue.events import Event, EventState, ListedEvent, ms_to_datetime


@dataclass(frozen=True)
class EnqueueResult:
    """The answer to an enqueue: a new event, or a duplicate of the one already active."""

    event_id: str
    dedup_key: str
    duplicate: bool
    times_queued: int = 1
    replayed: bool = False  # an idempotency key seen before: this is the event it made then


@dataclass(frozen=True)
class EventSummary:
    """The few fields shown for an event in health checks and statistics."""

    event_id: str
    account_id: str
    exec_command: str
    times_queued: int
    created_at: datetime | None
    state: str
    last_error: str | None


@dataclass(frozen=True)
class ProcessorInfo:
    """A processor that sent a heartbeat recently."""

    consumer_id: str
    last_heartbeat: datetime
    age_seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def summarize_record(event_id: str, account_id: str, exec_command: str, times_queued: str,
                     created_at: str, state: str, last_error: str) -> EventSummary:
    """The summary of a record from its raw fields ('' when absent); never raises: a malformed
    count reads as 1, a malformed time as unknown, an unknown state as queued."""
    times = int(times_queued) if times_queued.isdigit() else 1
    created = ms_to_datetime(int(created_at)) if created_at.isdigit() else None
    known = state in EventState.__members__.values()
    return EventSummary(event_id, account_id, exec_command, times, created,
                        state if known else EventState.QUEUED.value, last_error or None)


@dataclass(frozen=True)
class QueueStats:
    """Counts and the oldest waiting event, read without scanning the queue."""

    queue_length: int
    processing: int
    retry_waiting: int
    active_events: int
    events_requeued: int
    total_events: int
    oldest_event: EventSummary | None
    oldest_event_age_seconds: float | None
    requeued_sample: list[EventSummary]
    redis_time: datetime
    memory_used_bytes: int = 0
    memory_limit_bytes: int = 0  # Redis's maxmemory; 0: no limit
    dedup_index_size: int = 0
    finished_events: int = 0  # finished records kept for the retention
    processors: list[ProcessorInfo] = field(default_factory=list)  # when asked for (alive_within)

    @property
    def placed_events(self) -> int:
        """Ids in the three areas: ready, claimed, waiting to be retried."""
        return self.queue_length + self.processing + self.retry_waiting

    @property
    def inconsistencies(self) -> list[str]:
        """What the O(1) counts say is wrong (empty when consistent): every live event sits in
        exactly one area and owns exactly one dedup key."""
        problems = []
        if self.total_events != self.placed_events:
            problems.append(
                f"{self.total_events} live events but {self.placed_events} in the areas "
                f"(queued {self.queue_length} + processing {self.processing} + retry_wait "
                f"{self.retry_waiting})")
        if self.active_events != self.total_events or self.dedup_index_size != self.total_events:
            problems.append(
                f"{self.total_events} live events but {self.active_events} active dedup keys "
                f"and {self.dedup_index_size} in the dedup index")
        return problems

    @property
    def memory_used_percent(self) -> float | None:
        """Memory used as a percentage of maxmemory, or None when Redis has no limit."""
        if not self.memory_limit_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_limit_bytes


# What a page holds: whole events, or events as a listing shows them.
PageEvent = TypeVar("PageEvent", Event, ListedEvent)


@dataclass(frozen=True)
class Page(Generic[PageEvent]):
    """One page of a listing and the number of events matching the filters."""

    events: list[PageEvent]
    total: int
    limit: int
    offset: int


EventPage = Page[Event]
ListedPage = Page[ListedEvent]  # as ``GET /queue/events`` shows it


LockRenewal = Literal["ok", "retaken"]


@dataclass(frozen=True)
class RepairReport:
    """What an operator's repair found and fixed: per event id, and in the dedup key set."""

    examined: int
    fixes: dict[str, list[str]]
    general: list[str]

    @property
    def fixed(self) -> int:
        """How many fixes were made."""
        return sum(len(f) for f in self.fixes.values()) + len(self.general)
