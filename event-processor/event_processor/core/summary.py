"""A short description of a command's result for the "event completed" log line.

It names the result's keys and counts its lists (and the statuses of listed orders), never a
value: results hold account data (positions, cash), and logs travel further than Redis does.
The whole result stays readable through the management service (``GET /queue/events/{id}``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

MAX_KEYS: Final = 20
MAX_CHARS: Final = 300


def summarize_result(result: Any) -> str:
    """E.g. ``orders=3 (Filled 2, Cancelled 1), symbols=2; keys: account_id, orders, symbols``."""
    if isinstance(result, dict):
        text = _summarize_mapping(result)
    elif isinstance(result, list):
        text = f"a list of {len(result)}"
    elif result is None:
        text = "no result"
    else:
        text = f"a {type(result).__name__}"
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"


def _summarize_mapping(result: dict[Any, Any]) -> str:
    counts = [_count(str(key), value) for key, value in sorted(result.items(), key=_by_name)
              if isinstance(value, list)]
    names = sorted(str(key) for key in result)
    shown = ", ".join(names[:MAX_KEYS]) + (f", … ({len(names)} keys)" if len(names) > MAX_KEYS
                                          else "")
    keys = f"keys: {shown}" if names else "an empty object"
    return "; ".join([", ".join(counts), keys] if counts else [keys])


def _by_name(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _count(name: str, items: list[Any]) -> str:
    statuses = Counter(str(i["status"]) for i in items
                       if isinstance(i, dict) and isinstance(i.get("status"), str))
    if not statuses:
        return f"{name}={len(items)}"
    detail = ", ".join(f"{status} {n}" for status, n in statuses.most_common())
    return f"{name}={len(items)} ({detail})"
