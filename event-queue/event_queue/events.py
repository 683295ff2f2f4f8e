"""The event model and its Redis hash (de)serialisation.

An event is stored as one hash (see :func:`event_queue.keys.event`). Times are kept in the hash as
milliseconds of the Redis clock, because the Lua scripts stamp them; the model exposes UTC datetimes.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from event_queue.errors import InvalidResult
from event_queue.keys import dedup_key
from event_queue.timeline import RunningAttempt, Step, build_timeline, parse_steps

# Matched with fullmatch: Python's "$" also matches before a trailing newline ("DU1000000\n").
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# The same for JSON Schema and pydantic patterns (Rust regex, where "$" is the end of the text).
ACCOUNT_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


class ExecCommand(StrEnum):
    """The commands a webhook can ask for. There is no ``health`` command (the plan removed it)."""

    REBALANCE = "rebalance"
    PRINT_REBALANCE = "print-rebalance"
    PRINT_POSITIONS = "print-positions"
    PRINT_EQUITY = "print-equity"
    PRINT_ORDERS = "print-orders"
    CANCEL_ORDERS = "cancel-orders"


class EventState(StrEnum):
    """Where a live event is: ready in the queue, claimed by a processor, or waiting to retry."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRY_WAIT = "retry_wait"


def validate_account_id(value: str) -> str:
    """Account ids are short and may not contain ':' (the dedup key separator) or spaces."""
    if not ACCOUNT_ID_PATTERN.fullmatch(value):
        raise ValueError(
            "account_id must be 1-32 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


class NewEvent(BaseModel):
    """What a caller asks to enqueue. The queue assigns the id, times and state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str
    exec_command: ExecCommand
    data: dict[str, Any] = Field(default_factory=dict)

    _check_account = field_validator("account_id")(validate_account_id)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.account_id, self.exec_command.value)


class Event(BaseModel):
    """A live event as stored in Redis.

    ``exec_command`` is kept as the stored string so that a record written by hand (or by an older
    version) with an unknown command stays readable and visible; ``malformed`` says what was wrong
    with a record that did not decode cleanly.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    account_id: str
    exec_command: str
    times_queued: int = 1
    created_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    state: EventState = EventState.QUEUED
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    result: Any = None
    consumer: str | None = None
    idempotency_key: str | None = None
    claim_token: str | None = None
    malformed: str | None = None
    attempts: int = 0
    claimed_at: datetime | None = None
    added_by: str | None = None
    steps: tuple[dict[str, Any], ...] = ()
    steps_dropped: int = 0

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.account_id, self.exec_command)

    def timeline(self) -> list[Step]:
        """What happened to the event so far: received, queued, each attempt (the one running
        now included), each operator retry."""
        running = None
        if self.state is EventState.PROCESSING and self.claimed_at is not None:
            running = RunningAttempt(self.claimed_at, self.consumer, self.attempts or None)
        return build_timeline(created_at=self.created_at, added_by=self.added_by,
                              steps=self.steps, running=running)

    @property
    def command(self) -> ExecCommand | None:
        """The command as an :class:`ExecCommand`, or None when the stored value is unknown."""
        try:
            return ExecCommand(self.exec_command)
        except ValueError:
            return None


def new_event_id() -> str:
    return str(uuid.uuid4())


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# What ms_to_datetime raises for a time no datetime holds (a record written by hand).
_OUT_OF_RANGE: Final = (ValueError, OverflowError, OSError)


def _ms_or_none(ms: int) -> datetime | None:
    """The time, or None when no datetime holds it."""
    try:
        return ms_to_datetime(ms)
    except _OUT_OF_RANGE:
        return None


def datetime_to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def encode_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def encode_result(value: Any) -> str:
    """JSON text for a value stored as it is (a result, an event's data); raises InvalidResult
    for NaN or Infinity, which no strict JSON reader accepts."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str,
                          allow_nan=False)
    except ValueError as exc:
        raise InvalidResult(str(exc)) from None
    except RecursionError:
        raise InvalidResult("nested too deeply") from None


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or Infinity replaced by its name as a string ("NaN",
    "Infinity", "-Infinity"), so that it can be stored; other values are kept."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def _optional_ms(raw: str | None) -> datetime | None:
    return ms_to_datetime(int(raw)) if raw else None


def _decode_json(raw: str | None, default: Any) -> Any:
    return json.loads(raw) if raw else default


def decode_event(event_id: str, fields: dict[str, str]) -> Event:
    """Build an :class:`Event` from its hash; never raises for a malformed record.

    A record that does not decode is returned with the fields that could be read and ``malformed``
    set, so that operators can still see it and processors can fail it like any other event.
    """
    try:
        return Event(
            event_id=event_id,
            account_id=fields["account_id"],
            exec_command=fields["exec_command"],
            times_queued=int(fields.get("times_queued") or 1),
            created_at=ms_to_datetime(int(fields["created_at"])),
            data=_decode_json(fields.get("data"), {}),
            state=EventState(fields.get("state") or EventState.QUEUED),
            last_error=fields.get("last_error") or None,
            next_attempt_at=_optional_ms(fields.get("next_attempt_at")),
            result=_decode_json(fields.get("result"), None),
            consumer=fields.get("consumer") or None,
            idempotency_key=fields.get("idempotency_key") or None,
            claim_token=fields.get("claim") or None,
            **_progress(fields),
        )
    except (KeyError, TypeError, ValidationError, RecursionError, *_OUT_OF_RANGE) as exc:
        return _malformed(event_id, fields, exc)


def _malformed(event_id: str, fields: dict[str, str], exc: Exception) -> Event:
    def safe_int(raw: str | None, default: int) -> int:
        try:
            return int(raw) if raw else default
        except ValueError:
            return default

    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    state = fields.get("state") or EventState.QUEUED
    return Event(
        event_id=event_id,
        account_id=fields.get("account_id", ""),
        exec_command=fields.get("exec_command", ""),
        times_queued=safe_int(fields.get("times_queued"), 1),
        created_at=_ms_or_none(safe_int(fields.get("created_at"), 0)) or ms_to_datetime(0),
        state=EventState(state) if state in EventState.__members__.values() else EventState.QUEUED,
        last_error=fields.get("last_error") or None,
        consumer=fields.get("consumer") or None,
        claim_token=fields.get("claim") or None,
        malformed=reason,
        **_progress(fields),
    )


def _progress(fields: dict[str, str]) -> dict[str, Any]:
    """The attempts and steps of a record; never raises (a bad field reads as absent)."""
    def number(name: str) -> int:
        try:
            return max(0, int(fields.get(name) or 0))
        except ValueError:
            return 0

    claimed = number("claimed_at")
    return {"attempts": number("attempts"), "claimed_at": _ms_or_none(claimed) if claimed
            else None, "added_by": fields.get("added_by") or None,
            "steps": tuple(parse_steps(fields.get("steps") or "")),
            "steps_dropped": number("steps_dropped")}


@dataclass(frozen=True, slots=True)
class ListedEvent:
    """A live event as a listing shows it: what it is, where it is, why it last failed.

    ``GET /queue/events`` reads up to 1,000 records a page and shows only these fields, so
    :func:`decode_listed` reads them without building the whole :class:`Event` (its data, result
    and timeline).
    """

    event_id: str
    account_id: str
    exec_command: str
    dedup_key: str
    times_queued: int
    state: EventState
    created_at: datetime
    last_error: str | None
    next_attempt_at: datetime | None
    consumer: str | None
    malformed: str | None

    @classmethod
    def of(cls, event: Event) -> ListedEvent:
        return cls(event.event_id, event.account_id, event.exec_command, event.dedup_key,
                   event.times_queued, event.state, event.created_at, event.last_error,
                   event.next_attempt_at, event.consumer, event.malformed)


_STATES: Final = {state.value: state for state in EventState}
# The record fields decode_listed reads (all it needs, also to tell a malformed record and why):
# a listing asks Redis for these only, not for a failing event's timeline of up to 8 KB.
LISTED_FIELDS: Final = ("account_id", "exec_command", "times_queued", "created_at", "data",
                        "state", "last_error", "next_attempt_at", "result", "consumer")


def decode_listed(event_id: str, fields: dict[str, str]) -> ListedEvent:
    """``ListedEvent.of(decode_event(event_id, fields))``, the same in every case (tested, also
    when ``fields`` holds only :data:`LISTED_FIELDS`), in a quarter of the time for a
    well-formed record. A record is malformed when its data or result
    is not JSON (its data not an object), so both are still parsed (by orjson, stricter than the
    standard library: what it refuses goes to :func:`decode_event` for the exact answer, as does
    anything else unusual). Never raises."""
    try:
        account_id, exec_command = fields["account_id"], fields["exec_command"]
        state = _STATES[fields.get("state") or "queued"]
        data, result = fields.get("data"), fields.get("result")
        if data and type(orjson.loads(data)) is not dict:
            raise ValueError("data is not an object")
        if result:
            orjson.loads(result)  # only checked: a result that is not JSON makes it malformed
        return ListedEvent(
            event_id, account_id, exec_command, dedup_key(account_id, exec_command),
            int(fields.get("times_queued") or 1), state, ms_to_datetime(int(fields["created_at"])),
            fields.get("last_error") or None, _optional_ms(fields.get("next_attempt_at")),
            fields.get("consumer") or None, None)
    except Exception:
        return ListedEvent.of(decode_event(event_id, fields))
