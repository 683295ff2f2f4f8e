"""Finished events: their records, the retention that bounds them, and pages of the history.

A finished event (completed by a processor, or deleted by an operator) keeps its record, as one
JSON text, for the retention: at most ``max_events`` records, none older than ``max_age_seconds``.
The history is read in pages, newest first, through an opaque cursor (a position in the index).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from event_queue.events import ExecCommand, ms_to_datetime
from event_queue.keys import dedup_key
from event_queue.timeline import Ending, Step, build_timeline, parse_steps

MAX_EVENTS_LIMIT: Final = 100_000  # the largest retention count a deployment may choose
MAX_AGE_DAYS_LIMIT: Final = 366.0
DEFAULT_MAX_EVENTS: Final = 5000
DEFAULT_MAX_AGE_DAYS: Final = 30.0
# One script of a history page reads at most this many index members (a few ms of Redis time),
# and a page runs at most this many scripts: a page of a rare combination of filters may come
# back short, with a cursor to go on from.
HISTORY_SCAN_BUDGET: Final = 2000
HISTORY_SCAN_CALLS: Final = 10
_SUFFIX: Final = re.compile(r"(\d{13})\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.+)", re.S)


class Outcome(StrEnum):
    """How a finished event ended."""

    COMPLETED = "completed"
    DELETED = "deleted"


class InvalidCursor(ValueError):
    """A history cursor that this queue did not make."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"not a history cursor: {cursor[:80]!r}")
        self.cursor = cursor


@dataclass(frozen=True)
class Retention:
    """How long finished records are kept: at most ``max_events`` of them (the oldest go
    first), none older than ``max_age_seconds``."""

    max_events: int = DEFAULT_MAX_EVENTS
    max_age_seconds: float = DEFAULT_MAX_AGE_DAYS * 86400

    def __post_init__(self) -> None:
        if not 1 <= self.max_events <= MAX_EVENTS_LIMIT:
            raise ValueError(f"max_events must be 1-{MAX_EVENTS_LIMIT}")
        if not 0 < self.max_age_seconds <= MAX_AGE_DAYS_LIMIT * 86400:
            raise ValueError(f"max_age_seconds must be positive, at most {MAX_AGE_DAYS_LIMIT:g} days")

    @property
    def max_age_ms(self) -> int:
        return max(1, int(self.max_age_seconds * 1000))


class FinishedEvent(BaseModel):
    """The record of a finished event, as kept for the retention."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    account_id: str = ""
    exec_command: str = ""
    outcome: Outcome
    created_at: datetime | None = None
    finished_at: datetime | None = None
    finished_by: str | None = Field(
        default=None, description="the processor that completed it, or the operator's address "
        "that deleted it")
    added_by: str | None = None
    times_queued: int = 1
    attempts: int = 0
    last_error: str | None = None
    idempotency_key: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    steps: tuple[dict[str, Any], ...] = ()
    steps_dropped: int = 0
    malformed: str | None = None

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.account_id, self.exec_command)

    @property
    def state(self) -> str:
        """``completed`` or ``deleted``."""
        return self.outcome.value

    def timeline(self) -> list[Step]:
        """What happened to the event, from received to completed or deleted."""
        return build_timeline(created_at=self.created_at, added_by=self.added_by,
                              steps=self.steps,
                              ending=Ending(self.finished_at, self.outcome.value, self.finished_by))


@dataclass(frozen=True)
class HistoryQuery:
    """Filters and position of one page of the history; ``since`` is included, ``until`` is
    not. ``before`` (older entries) and ``after`` (newer ones) are cursors of earlier pages."""

    account_id: str | None = None
    exec_command: ExecCommand | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    before: str | None = None
    after: str | None = None

    def __post_init__(self) -> None:
        if self.before is not None and self.after is not None:
            raise ValueError("give before or after, not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be earlier than until")
        if not 1 <= self.limit <= 1000:
            raise ValueError("limit must be 1-1000")


@dataclass(frozen=True)
class HistoryPage:
    """Finished events, newest first. ``older`` is the cursor of the next older page (None at
    the end), ``newer`` of the next newer one (None at the newest). A page may hold fewer
    entries than asked while ``older`` is set: its walk met its read budget first."""

    entries: list[FinishedEvent]
    older: str | None
    newer: str | None
    limit: int


def encode_cursor(suffix: str) -> str:
    """The opaque cursor of a position in the finished index."""
    return base64.urlsafe_b64encode(suffix.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position a cursor names; raises InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(cursor) from None
    if not _SUFFIX.fullmatch(raw):
        raise InvalidCursor(cursor)
    return raw


def decode_finished(text: str, *, suffix: str = "", event_id: str = "") -> FinishedEvent:
    """A finished record from its JSON text; never raises. A record that is missing or does not
    decode is returned with what the index (``suffix``) or the caller (``event_id``) says about
    it, and ``malformed`` set."""
    try:
        raw = json.loads(text) if text else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return _from_suffix(suffix, "the record is missing" if not text else
                            "the record is not a JSON object", event_id=event_id)
    try:
        return _decoded(raw)
    except (KeyError, TypeError, ValueError) as exc:
        note = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return _from_suffix(suffix, note, event_id=str(raw.get("event_id") or event_id))


def _decoded(raw: dict[str, Any]) -> FinishedEvent:
    data = raw.get("data")
    return FinishedEvent(
        event_id=str(raw["event_id"]),
        account_id=str(raw.get("account_id") or ""),
        exec_command=str(raw.get("exec_command") or ""),
        outcome=Outcome(raw.get("outcome") or "completed"),
        created_at=_when(raw.get("created_at")),
        finished_at=_when(raw.get("finished_at")),
        finished_by=_text(raw.get("by")),
        added_by=_text(raw.get("added_by")),
        times_queued=int(raw.get("times_queued") or 1),
        attempts=int(raw.get("attempts") or 0),
        last_error=_text(raw.get("last_error")),
        idempotency_key=_text(raw.get("idempotency_key")),
        data=data if isinstance(data, dict) else {},
        result=raw.get("result"),
        steps=tuple(parse_steps(raw.get("steps") or [])),
        steps_dropped=int(raw.get("steps_dropped") or 0),
    )


def _from_suffix(suffix: str, note: str, *, event_id: str = "") -> FinishedEvent:
    found = _SUFFIX.fullmatch(suffix)
    if found is None:
        return FinishedEvent(event_id=event_id or "?", outcome=Outcome.COMPLETED, malformed=note)
    ms, account, command, outcome, id_ = found.groups()
    return FinishedEvent(
        event_id=event_id or id_, account_id=account, exec_command=command,
        outcome=Outcome(outcome) if outcome in Outcome.__members__.values() else
        Outcome.COMPLETED, finished_at=ms_to_datetime(int(ms)), malformed=note)


def _when(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ms_to_datetime(int(value))
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
