"""The Redis queue contract shared by the event broker, the processor and the management service."""

from event_queue.client import EventQueue
from event_queue.errors import (
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    LeaseLost,
    QueueError,
    QueueUnavailable,
)
from event_queue.events import Event, EventState, ExecCommand, NewEvent
from event_queue.keys import dedup_key
from event_queue.stats import EnqueueResult, EventPage, EventSummary, ProcessorInfo, QueueStats

__all__ = [
    "EnqueueResult",
    "Event",
    "EventNotFound",
    "EventNotWaiting",
    "EventPage",
    "EventProcessing",
    "EventQueue",
    "EventState",
    "EventSummary",
    "ExecCommand",
    "LeaseLost",
    "NewEvent",
    "ProcessorInfo",
    "QueueError",
    "QueueStats",
    "QueueUnavailable",
    "dedup_key",
]
