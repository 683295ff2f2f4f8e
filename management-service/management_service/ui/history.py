"""The history page's filter form: read from the query string, checked, turned into a history
query of the API, and written back into the links of the next pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from event_queue import ExecCommand, FinishedEvent, HistoryQuery, Outcome
from event_queue.events import ACCOUNT_ID_PATTERN
from management_service.ui.views import when

FIELDS = ("account_id", "exec_command", "outcome", "since", "until")
_CURSOR_CHARS = 512


@dataclass
class HistoryForm:
    """The filters as typed (shown back in the form) and what is wrong with them."""

    values: dict[str, str]
    before: str | None = None
    after: str | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, params: Mapping[str, str]) -> HistoryForm:
        """The form from a query string; ``problems`` names each bad field."""
        form = cls({name: params.get(name, "").strip() for name in FIELDS},
                   before=params.get("before") or None, after=params.get("after") or None)
        form.problems = form._check()
        return form

    def _check(self) -> list[str]:
        v = self.values
        problems = []
        if v["account_id"] and not ACCOUNT_ID_PATTERN.fullmatch(v["account_id"]):
            problems.append("Account: an IBKR account id such as DU1234567.")
        if v["exec_command"] and v["exec_command"] not in {c.value for c in ExecCommand}:
            problems.append("Command: choose one of the list.")
        if v["outcome"] not in ("", *(o.value for o in Outcome)):
            problems.append("Outcome: completed or deleted.")
        for name, label in (("since", "From"), ("until", "Until")):
            if v[name] and _time(v[name]) is None:
                problems.append(f"{label}: a date and time such as 2026-11-28T14:30 (UTC).")
        since, until = _time(v["since"]), _time(v["until"])
        if since and until and since >= until:
            problems.append("From must be earlier than Until.")
        if any(c is not None and len(c) > _CURSOR_CHARS for c in (self.before, self.after)):
            problems.append("That page link is not valid: start again from the newest.")
        return problems

    def query(self, limit: int) -> HistoryQuery:
        """The API query of a checked form."""
        v = self.values
        return HistoryQuery(
            account_id=v["account_id"] or None,
            exec_command=ExecCommand(v["exec_command"]) if v["exec_command"] else None,
            outcome=Outcome(v["outcome"]) if v["outcome"] else None,
            since=_time(v["since"]), until=_time(v["until"]), limit=limit,
            before=None if self.after else self.before, after=self.after)

    def link(self, **cursor: str | None) -> str | None:
        """The query string of another page with the same filters (None: there is none)."""
        if any(value is None for value in cursor.values()):
            return None
        return urlencode({**{k: v for k, v in self.values.items() if v}, **cursor})


def _time(text: str) -> datetime | None:
    """A date and time typed in the form (``datetime-local``: no zone, read as UTC)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def history_rows(entries: list[FinishedEvent]) -> list[dict[str, Any]]:
    """The rows of the history table."""
    return [{"event_id": e.event_id, "account_id": e.account_id,
             "exec_command": e.exec_command, "outcome": e.outcome.value,
             "attempts": e.attempts, "times_queued": e.times_queued,
             "finished_at": when(e.finished_at), "by": e.finished_by or "",
             "malformed": e.malformed} for e in entries]
