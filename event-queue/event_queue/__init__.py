"""The Redis queue contract shared by the event broker, the processor and the management service."""

from event_queue.client import Claim, EventQueue
from event_queue.errors import (
    AccountLockConflict,
    EventFinished,
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    InvalidResult,
    LeaseLost,
    QueueError,
    QueueUnavailable,
)
from event_queue.events import Event, EventState, ExecCommand, ListedEvent, NewEvent
from event_queue.finished import (
    FinishedEvent,
    HistoryPage,
    HistoryQuery,
    InvalidCursor,
    Outcome,
    Retention,
)
from event_queue.keys import Keys, dedup_key
from event_queue.stats import (
    EnqueueResult,
    EventPage,
    EventSummary,
    ListedPage,
    ProcessorInfo,
    QueueStats,
    RepairReport,
)

__all__ = [
    "AccountLockConflict",
    "Claim",
    "EnqueueResult",
    "Event",
    "EventFinished",
    "EventNotFound",
    "EventNotWaiting",
    "EventPage",
    "EventProcessing",
    "EventQueue",
    "EventState",
    "EventSummary",
    "ExecCommand",
    "FinishedEvent",
    "HistoryPage",
    "HistoryQuery",
    "InvalidCursor",
    "InvalidResult",
    "Keys",
    "LeaseLost",
    "ListedEvent",
    "ListedPage",
    "NewEvent",
    "Outcome",
    "ProcessorInfo",
    "QueueError",
    "QueueStats",
    "QueueUnavailable",
    "RepairReport",
    "Retention",
    "dedup_key",
]
