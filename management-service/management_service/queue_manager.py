"""Queue inspection and manipulation for operators, over the shared :class:`EventQueue` client.

Every mutation an authorised operator attempts is written as one JSON log line and kept in the
capped audit list (``GET /audit``), whatever its outcome. API keys never appear in either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from event_queue import (
    Event,
    EventQueue,
    EventState,
    ExecCommand,
    FinishedEvent,
    HistoryPage,
    HistoryQuery,
    ListedPage,
    QueueError,
    QueueUnavailable,
    RepairReport,
)
from event_queue.accounts import Accounts
from event_queue.events import ACCOUNT_ID_REGEX, new_event_id
from event_queue.requests import EventRequest
from management_service.errors import DuplicateEvent, FilterTooBroad, ManualEventsDisabled
from management_service.health import Observation, observe
from management_service.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_READ = 1000  # no request decodes more event records than this
MANUAL_PREFIX = "manual:"  # idempotency keys of events added by operators


@dataclass(frozen=True)
class Operator:
    """Who asked for a mutation: the client address (never the key)."""

    client: str


class EventFilters(BaseModel):
    """The filters of ``GET /queue/events``: its route declares its query parameters with this
    model and its fast path validates with it, so both read a query the same way."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: EventState | None = Field(default=None,
                                     description="queued, processing or retry_wait")
    account_id: str | None = Field(default=None, pattern=ACCOUNT_ID_REGEX)
    exec_command: ExecCommand | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class QueueManager:
    """Reads and operator actions on the queue; one per app, made by the lifespan."""

    def __init__(
        self,
        queue: EventQueue,
        *,
        accounts: Accounts | None,
        metrics: Metrics,
        audit_cap: int,
    ) -> None:
        self.queue = queue
        self.accounts = accounts
        self.metrics = metrics
        self.audit_cap = audit_cap

    # -- reads --------------------------------------------------------------------------------

    async def observe(self, *, window_seconds: float, timeout: float,
                      sample_size: int = 5) -> Observation:
        """Statistics and live processors in one script call (see :func:`health.observe`)."""
        return await observe(self.queue, window_seconds=window_seconds,
                             sample_size=sample_size, timeout=timeout)

    async def list_events(self, filters: EventFilters) -> ListedPage:
        """A page of events as a listing shows them, oldest first (see
        :meth:`_by_state_and_command` for one exception)."""
        command = filters.exec_command.value if filters.exec_command else None
        if filters.state and command and not filters.account_id:
            return await self._by_state_and_command(filters.state, command, filters)
        return await self.queue.listing(state=filters.state, account_id=filters.account_id,
                                        exec_command=command, limit=filters.limit,
                                        offset=filters.offset)

    async def _by_state_and_command(
        self, state: EventState, command: str, filters: EventFilters
    ) -> ListedPage:
        """Walk the state's own area (small for processing and retry_wait), never the queue.

        The client would walk the command's index, reading every event of that command; this
        reads at most :data:`MAX_READ` records, or refuses with FilterTooBroad.
        """
        stats = await self.queue.stats(sample_size=1)
        size = {EventState.QUEUED: stats.queue_length, EventState.PROCESSING: stats.processing,
                EventState.RETRY_WAIT: stats.retry_waiting}[state]
        if size > MAX_READ:
            raise FilterTooBroad(state.value, size, MAX_READ)
        area = await self.queue.listing(state=state, limit=MAX_READ, offset=0)
        matching = [e for e in area.events if e.exec_command == command]
        window = matching[filters.offset:filters.offset + filters.limit]
        return ListedPage(window, len(matching), filters.limit, filters.offset)

    async def get_event(self, event_id: str) -> Event | FinishedEvent:
        """One event, live or finished (kept for the retention); raises EventNotFound."""
        return await self.queue.lookup(event_id)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        """A page of finished events (completed or deleted), newest first; raises
        InvalidCursor."""
        return await self.queue.history(query)

    async def audit_log(self, limit: int) -> list[dict[str, Any]]:
        """Operator actions, newest first."""
        return await self.queue.audit_log(limit=limit)

    # -- mutations ----------------------------------------------------------------------------

    async def delete_event(self, event_id: str, operator: Operator) -> Event:
        """Delete an event and its dedup key; raises EventNotFound or EventProcessing."""
        try:
            event = await self.queue.delete(event_id, by=operator.client)
        except QueueError as exc:
            await self._audit("delete", operator, exc, event_id=event_id)
            raise
        await self._audit("delete", operator, "deleted", event=event)
        return event

    async def retry_event(self, event_id: str, operator: Operator) -> Event:
        """Send a retry-waiting event to the head of the queue now."""
        try:
            event = await self.queue.retry_now(event_id, by=operator.client)
        except QueueError as exc:
            await self._audit("retry", operator, exc, event_id=event_id)
            raise
        await self._audit("retry", operator, "queued", event=event)
        return event

    async def add_event(self, request: EventRequest, operator: Operator) -> str:
        """Validate against the accounts file and enqueue; returns the new event id.

        Raises UnknownAccount / AccountDisabled (invalid), DuplicateEvent (already active).
        """
        if self.accounts is None:
            raise ManualEventsDisabled()
        new_event = request.to_new_event(self.accounts)
        account, command = new_event.account_id, new_event.exec_command.value
        try:
            # A fresh idempotency key: a resent call (the connection dropped after Redis ran it)
            # is answered with this event, not as a duplicate of itself.
            result = await self.queue.enqueue(new_event,
                                              idempotency_key=MANUAL_PREFIX + new_event_id(),
                                              added_by=operator.client)
        except QueueError as exc:
            await self._audit("add", operator, exc, account_id=account, exec_command=command)
            raise
        if result.replayed:
            result = replace(result, duplicate=False)
        outcome = "duplicate" if result.duplicate else "queued"
        await self._audit("add", operator, outcome, event_id=result.event_id,
                          account_id=account, exec_command=command)
        if result.duplicate:
            raise DuplicateEvent(result.event_id, result.dedup_key)
        return result.event_id

    async def repair(self, operator: Operator) -> RepairReport:
        """Repair the queue state (see :meth:`EventQueue.repair`); audited like every mutation."""
        try:
            report = await self.queue.repair()
        except QueueError as exc:
            await self._audit("repair", operator, exc)
            raise
        outcome = f"fixed {report.fixed}" if report.fixed else "nothing to fix"
        await self._audit("repair", operator, outcome)
        for event_id, fixes in report.fixes.items():
            logger.warning("queue repaired", extra={"fields": {
                "audit": True, "event_id": event_id, "fixes": fixes}})
        return report

    async def _audit(
        self,
        action: str,
        operator: Operator,
        outcome: str | Exception,
        *,
        event: Event | None = None,
        event_id: str | None = None,
        account_id: str | None = None,
        exec_command: str | None = None,
    ) -> None:
        entry = {
            "action": action,
            "outcome": outcome if isinstance(outcome, str) else _outcome_of(outcome),
            "event_id": event.event_id if event else event_id,
            "account_id": event.account_id if event else account_id,
            "exec_command": event.exec_command if event else exec_command,
            "client": operator.client,
        }
        if isinstance(outcome, Exception):
            entry["error"] = str(outcome)
        logger.info("queue mutation", extra={"fields": {"audit": True, **entry}})
        self.metrics.mutations.labels(action=action, outcome=entry["outcome"]).inc()
        if isinstance(outcome, QueueUnavailable):
            return  # Redis is down: the log line is the record
        try:
            await self.queue.record_audit(entry, cap=self.audit_cap)
        except QueueUnavailable as exc:
            logger.error("audit entry not stored in Redis: %s", exc,
                         extra={"fields": {"audit": True, **entry}})


def _outcome_of(exc: Exception) -> str:
    """``EventNotFound`` → ``event_not_found``."""
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
