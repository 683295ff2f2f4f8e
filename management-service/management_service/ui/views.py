"""What the pages show, computed from the queue's data (templates only lay it out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from event_queue import Event, EventPage
from management_service.health import Observation
from management_service.schemas import HealthOut


@dataclass(frozen=True)
class Check:
    """One /health check as a row: name, passing, value and what it says."""

    name: str
    passing: bool
    value: str
    output: str


@dataclass(frozen=True)
class Overview:
    """The overview page's data."""

    status: str
    counts: dict[str, int]
    oldest_age: float | None
    checks: list[Check]
    processors: list[dict[str, Any]]
    waiting: list[Event]
    running: list[Event]
    redis_time: datetime


def overview(seen: Observation, report: HealthOut, waiting: EventPage,
             running: EventPage) -> Overview:
    """The overview from one observation, its health report and the two listings."""
    stats = seen.stats
    checks = [
        Check(name, check.status == "pass",
              "" if check.observed_value is None else
              f"{check.observed_value} {check.observed_unit or ''}".strip(),
              check.output or "")
        for name, check in report.checks.items()
    ]
    processors = [{"consumer_id": p.consumer_id, "age": p.age_seconds,
                   "host": p.info.get("host"), "in_flight": p.info.get("in_flight"),
                   "stopping": bool(p.info.get("stopping"))}
                  for p in sorted(seen.processors, key=lambda p: p.consumer_id)]
    return Overview(
        status=report.status,
        counts={"queued": stats.queue_length, "processing": stats.processing,
                "waiting to retry": stats.retry_waiting, "requeued": stats.events_requeued},
        oldest_age=stats.oldest_event_age_seconds,
        checks=checks, processors=processors,
        waiting=waiting.events, running=running.events, redis_time=stats.redis_time)


@dataclass(frozen=True)
class Step:
    """One line of an event's timeline."""

    at: str
    what: str


@dataclass(frozen=True)
class OrderRow:
    """One order of a rebalance's result."""

    symbol: str
    action: str
    quantity: Any
    status: str
    filled: Any
    avg_price: Any
    order_type: str


@dataclass(frozen=True)
class EventView:
    """The event page's data: a live event or a finished one."""

    event_id: str
    account_id: str
    exec_command: str
    state: str
    times_queued: int
    data: dict[str, Any]
    result: Any
    last_error: str | None
    timeline: list[Step]
    orders: list[OrderRow] = field(default_factory=list)
    live: bool = True
    consumer: str | None = None


def event_view(live: Event | None, finished: dict[str, Any] | None) -> EventView:
    """The page of a live event, else of a finished one (from the history)."""
    if live is not None:
        steps = [Step(_when(live.created_at), "received and queued")]
        if live.times_queued > 1:
            steps.append(Step("", f"failed {live.times_queued - 1} time(s); last error: "
                                  f"{live.last_error or 'none recorded'}"))
        if live.next_attempt_at is not None:
            steps.append(Step(_when(live.next_attempt_at), "next attempt"))
        if live.consumer:
            steps.append(Step("", f"processing on {live.consumer}"))
        return EventView(live.event_id, live.account_id, live.exec_command, live.state.value,
                         live.times_queued, live.data, live.result, live.last_error, steps,
                         orders(live.result), live=True, consumer=live.consumer)
    assert finished is not None
    outcome = str(finished.get("outcome", "finished"))
    steps = [Step(_when(finished.get("created_at")), "received and queued")]
    if int(finished.get("times_queued") or 1) > 1:
        steps.append(Step("", f"failed {int(finished['times_queued']) - 1} time(s) before"))
    steps.append(Step(_when(finished.get("finished_at")), outcome))
    result = finished.get("result")
    return EventView(str(finished.get("event_id")), str(finished.get("account_id", "")),
                     str(finished.get("exec_command", "")), outcome,
                     int(finished.get("times_queued") or 1), dict(finished.get("data") or {}),
                     result, finished.get("last_error") or None, steps, orders(result),
                     live=False)


def orders(result: Any) -> list[OrderRow]:
    """The orders of a rebalance result, as table rows (none for other results)."""
    if not isinstance(result, dict) or not isinstance(result.get("orders"), list):
        return []
    return [OrderRow(str(o.get("symbol", "")), str(o.get("action", "")), o.get("quantity"),
                     str(o.get("status", "")), o.get("filled"), o.get("avg_price"),
                     str(o.get("order_type", "")))
            for o in result["orders"] if isinstance(o, dict)]


def history_rows(entries: list[dict[str, Any]], *, account_id: str, exec_command: str,
                 outcome: str) -> list[dict[str, Any]]:
    """The history entries that match every filter given (newest first, as stored)."""
    return [e for e in entries
            if (not account_id or e.get("account_id") == account_id)
            and (not exec_command or e.get("exec_command") == exec_command)
            and (not outcome or e.get("outcome") == outcome)]


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, str) and value:
        try:
            return _when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return ""
