"""The few named errors of the queue contract; each carries the data a caller needs."""

from __future__ import annotations


class QueueError(Exception):
    """Base class of every error raised by :mod:`event_queue`."""


class EventNotFound(QueueError):
    """No live event has this id."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id} not found")
        self.event_id = event_id


class EventProcessing(QueueError):
    """The event is claimed by a processor; it cannot be deleted or moved now."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id} is being processed")
        self.event_id = event_id


class EventNotWaiting(QueueError):
    """The event is not waiting for a retry, so there is nothing to retry now."""

    def __init__(self, event_id: str, state: str) -> None:
        super().__init__(f"event {event_id} is {state}, not waiting for a retry")
        self.event_id = event_id
        self.state = state


class EventFinished(QueueError):
    """The event has already finished (completed, or deleted): its record is kept, but it can no
    longer be changed."""

    def __init__(self, event_id: str, state: str) -> None:
        super().__init__(f"event {event_id} has already finished ({state})")
        self.event_id = event_id
        self.state = state


class LeaseLost(QueueError):
    """The caller no longer owns the event: its lease expired and it was reaped or re-claimed."""

    def __init__(self, event_id: str, consumer_id: str) -> None:
        super().__init__(f"consumer {consumer_id} no longer holds event {event_id}")
        self.event_id = event_id
        self.consumer_id = consumer_id


class QueueUnavailable(QueueError):
    """Redis could not be reached or did not answer in time. Services answer 503."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"queue unavailable: {reason}")
        self.reason = reason


class AccountLockConflict(QueueError):
    """Another holder took the account lock while this claim's command ran: stop the command."""

    def __init__(self, account_id: str, event_id: str) -> None:
        super().__init__(
            f"the lock of account {account_id} was taken by another holder while event "
            f"{event_id} ran"
        )
        self.account_id = account_id
        self.event_id = event_id


class InvalidResult(QueueError, ValueError):
    """A value to store (a command's result, an event's data) is not finite JSON (NaN,
    Infinity, 1e400); nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not storable as JSON: {reason}")
        self.reason = reason
