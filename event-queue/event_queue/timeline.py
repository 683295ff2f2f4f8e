"""An event's timeline: what happened to it, read from the steps its record keeps.

The scripts append a step only when the event's state changes: an attempt when it ends (when it
started, on which processor, how long it took, how it ended and why), an operator's retry. The
rest is derived from the record: *received* and *queued* from ``created_at`` (and who added it by
hand), the attempt running now from the claim, *completed* or *deleted* from the finished record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

# How an attempt ended: the values of a step's "end" (plus "running" for the attempt under way).
ATTEMPT_ENDS: Final = ("completed", "failed", "handed_back", "lease_expired")


@dataclass(frozen=True)
class Step:
    """One line of an event's timeline.

    ``step`` is ``received``, ``queued``, ``attempt``, ``retried`` (by an operator),
    ``completed`` or ``deleted``. An attempt has ``at`` = when it was claimed, ``attempt`` (its
    number), ``consumer``, ``duration_ms``, ``outcome`` (``running``, ``completed``, ``failed``,
    ``handed_back`` or ``lease_expired``), ``error`` and, when it failed, ``next_attempt_at``.
    ``by`` says who: the operator's address for ``queued`` by hand, ``retried`` and
    ``deleted``, the processor for ``completed``. ``late``: the attempt completed after its
    lease had expired (the work was done, so the event was not run again).
    """

    at: datetime | None
    step: str
    attempt: int | None = None
    consumer: str | None = None
    duration_ms: int | None = None
    outcome: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    by: str | None = None
    late: bool = False


@dataclass(frozen=True)
class RunningAttempt:
    """The attempt of a claimed event, still under way."""

    started: datetime
    consumer: str | None
    attempt: int | None


@dataclass(frozen=True)
class Ending:
    """How a finished event ended."""

    at: datetime | None
    outcome: str
    by: str | None


def parse_steps(stored: str | Iterable[Any]) -> list[dict[str, Any]]:
    """The steps of a live record (JSON objects, one per line) or of a finished record (a JSON
    array, already decoded); what is not an object is skipped, so a damaged step never hides
    the others."""
    if isinstance(stored, str):
        return parse_steps([_json(line) for line in stored.split("\n") if line])
    return [item for item in stored if isinstance(item, dict)]


def build_timeline(
    *,
    created_at: datetime | None,
    added_by: str | None,
    steps: Iterable[dict[str, Any]],
    running: RunningAttempt | None = None,
    ending: Ending | None = None,
) -> list[Step]:
    """The whole timeline, oldest first."""
    timeline = [Step(created_at, "received"), Step(created_at, "queued", by=added_by or None)]
    timeline += [step for raw in steps if (step := _stored(raw)) is not None]
    if running is not None:
        timeline.append(Step(running.started, "attempt", attempt=running.attempt,
                             consumer=running.consumer, outcome="running"))
    if ending is not None:
        timeline.append(Step(ending.at, ending.outcome, by=ending.by))
    return timeline


def _stored(raw: dict[str, Any]) -> Step | None:
    kind = raw.get("step")
    if kind == "attempt":
        return Step(
            _time(raw.get("at")), "attempt", attempt=_int(raw.get("n")),
            consumer=_text(raw.get("by")), duration_ms=_int(raw.get("ms")),
            outcome=_text(raw.get("end")), error=_text(raw.get("error")),
            next_attempt_at=_time(raw.get("due")), late=raw.get("late") is True)
    if kind == "retried":
        return Step(_time(raw.get("at")), "retried", by=_text(raw.get("by")))
    return None


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
