"""Value objects returned by the queue client's read operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from event_queue.events import Event


@dataclass(frozen=True)
class EnqueueResult:
    """The answer to an enqueue: a new event, or a duplicate of the one already active."""

    event_id: str
    dedup_key: str
    duplicate: bool
    times_queued: int = 1


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

    @property
    def memory_used_percent(self) -> float | None:
        """Memory used as a percentage of maxmemory, or None when Redis has no limit."""
        if not self.memory_limit_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_limit_bytes


@dataclass(frozen=True)
class EventPage:
    """One page of a listing and the number of events matching the filters."""

    events: list[Event]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class ProcessorInfo:
    """A processor that sent a heartbeat recently."""

    consumer_id: str
    last_heartbeat: datetime
    age_seconds: float
    info: dict[str, Any] = field(default_factory=dict)
