"""What the pages show, computed from the queue's data (templates only lay it out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from event_queue import Event, FinishedEvent, ListedEvent, ListedPage
from event_queue.timeline import Step
from management_service.health import Observation, Report


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
    waiting: list[ListedEvent]
    running: list[ListedEvent]
    redis_time: datetime


def overview(seen: Observation, report: Report, waiting: ListedPage,
             running: ListedPage) -> Overview:
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
class StepRow:
    """One line of an event's timeline, as shown."""

    at: str
    what: str
    who: str
    took: str
    detail: str
    kind: str  # a CSS hint: ok, bad or plain


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
class SymbolRow:
    """One symbol of a rebalance's result: where it should be, where it was, what was done."""

    symbol: str
    target_weight: str
    price: str
    target_shares: str
    current: str
    ordered: str
    filled: str
    why: str


@dataclass(frozen=True)
class SymbolTable:
    """A rebalance's symbols; ``planned`` for a print-rebalance, whose plan places nothing."""

    rows: list[SymbolRow]
    planned: bool


@dataclass(frozen=True)
class EventView:
    """The event page's data: a live event or a finished one."""

    event_id: str
    account_id: str
    exec_command: str
    state: str
    times_queued: int
    attempts: int
    data: dict[str, Any]
    result: Any
    last_error: str | None
    timeline: list[StepRow]
    steps_dropped: int = 0
    orders: list[OrderRow] = field(default_factory=list)
    symbols: SymbolTable | None = None
    live: bool = True
    consumer: str | None = None
    finished_at: str = ""
    finished_by: str | None = None
    malformed: str | None = None


def event_view(event: Event | FinishedEvent) -> EventView:
    """The page of a live or a finished event."""
    finished = isinstance(event, FinishedEvent)
    return EventView(
        event_id=event.event_id, account_id=event.account_id, exec_command=event.exec_command,
        state=event.state if isinstance(event, FinishedEvent) else event.state.value,
        times_queued=event.times_queued, attempts=event.attempts, data=event.data,
        result=event.result, last_error=event.last_error,
        timeline=[step_row(s) for s in event.timeline()], steps_dropped=event.steps_dropped,
        orders=orders(event.result), symbols=symbol_table(event.result), live=not finished,
        consumer=None if isinstance(event, FinishedEvent) else event.consumer,
        finished_at=when(event.finished_at) if isinstance(event, FinishedEvent) else "",
        finished_by=event.finished_by if isinstance(event, FinishedEvent) else None,
        malformed=event.malformed)


_ENDS = {
    "running": ("running", "plain"),
    "completed": ("completed", "ok"),
    "failed": ("failed", "bad"),
    "handed_back": ("handed back", "plain"),
    "lease_expired": ("lease expired", "bad"),
}


def step_row(step: Step) -> StepRow:
    """A timeline step in words."""
    if step.step == "attempt":
        return _attempt_row(step)
    what = {"received": "Received", "queued": "Queued", "retried": "Retried now",
            "completed": "Completed", "deleted": "Deleted"}.get(step.step, step.step)
    who = step.by or ""
    if step.step in ("queued", "retried", "deleted") and step.by:
        who = f"operator {step.by}"
    detail = {"queued": "added by hand" if step.by else "",
              "retried": "sent to the head of the queue by an operator",
              "deleted": "deleted with its dedup key; it will not run"}.get(step.step, "")
    kind = "ok" if step.step == "completed" else "bad" if step.step == "deleted" else "plain"
    return StepRow(when(step.at), what, who, "", detail, kind)


def _attempt_row(step: Step) -> StepRow:
    ended, kind = _ENDS.get(step.outcome or "", (step.outcome or "", "plain"))
    number = f" {step.attempt}" if step.attempt else ""
    details = []
    if step.error:
        details.append(step.error)
    if step.outcome == "failed" and step.next_attempt_at is not None:
        details.append(f"next attempt {when(step.next_attempt_at)}")
    if step.outcome == "handed_back":
        details.append("given back when its processor stopped; not counted as a failure")
    if step.late:
        details.append("after its lease had expired; the work was done, so it did not run again")
    took = "" if step.duration_ms is None else _duration(step.duration_ms)
    return StepRow(when(step.at), f"Attempt{number}: {ended}", step.consumer or "", took,
                   "; ".join(details), kind)


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def orders(result: Any) -> list[OrderRow]:
    """The orders of a rebalance result, as table rows (none for other results)."""
    if not isinstance(result, dict) or not isinstance(result.get("orders"), list):
        return []
    return [OrderRow(str(o.get("symbol", "")), str(o.get("action", "")), o.get("quantity"),
                     str(o.get("status", "")), o.get("filled"), o.get("avg_price"),
                     str(o.get("order_type", "")))
            for o in result["orders"] if isinstance(o, dict)]


def symbol_table(result: Any) -> SymbolTable | None:
    """A rebalance's per-symbol result (``symbols``), or a print-rebalance's plan
    (``plan.symbols``); None for results without either (older rebalances, other commands)."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("symbols"), list):
        return SymbolTable([_symbol_row(s, planned=False) for s in result["symbols"]
                            if isinstance(s, dict)], planned=False)
    plan = result.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("symbols"), list):
        return SymbolTable([_symbol_row(s, planned=True) for s in plan["symbols"]
                            if isinstance(s, dict)], planned=True)
    return None


def _symbol_row(line: dict[str, Any], *, planned: bool) -> SymbolRow:
    weight = line.get("target_weight")
    return SymbolRow(
        symbol=str(line.get("symbol", "")),
        target_weight=f"{number(weight)} %" if _is_number(weight) else "–",
        price=number(line.get("price")),
        target_shares=number(line.get("target_shares")),
        current=number(line.get("current")),
        ordered=number(_planned_order(line) if planned else line.get("ordered")),
        filled="" if planned else number(line.get("filled")),
        why=str(line.get("reason") or ""))


def _planned_order(line: dict[str, Any]) -> Any:
    """The signed quantity a plan line would order (SELLs negative), 0 when none."""
    order = line.get("order")
    if not isinstance(order, dict) or not _is_number(order.get("quantity")):
        return 0
    return -order["quantity"] if order.get("action") == "SELL" else order["quantity"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: Any) -> str:
    """A number as a person reads it: whole numbers without decimals, others to 4 places."""
    if not _is_number(value):
        return "–" if value is None else str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def when(value: datetime | None) -> str:
    """A time in UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
