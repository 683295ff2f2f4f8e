"""Strict JSON for request bodies: UTF-8 only, finite numbers only, bounded nesting.

Python's ``json`` accepts more than JSON: ``NaN``, ``Infinity``, numbers like ``1e400`` that become
``inf``, and (from bytes) UTF-16 and UTF-32; deep nesting raises RecursionError instead of a parse
error. Both services read bodies through :func:`loads`, which refuses all of these with one named
error whose message a sender can act on.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

MAX_DEPTH: Final = 32  # an event is a few levels deep; this is far beyond any valid body


class InvalidJson(ValueError):
    """The body is not strict JSON; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"the number {text[:40]} is too large")
    return value


def _too_deep(text: str) -> bool:
    """True when brackets outside strings nest deeper than MAX_DEPTH (checked before parsing,
    so deep nesting never reaches the recursive parser)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


# Built once: json.loads with hooks builds a new decoder for every call.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float)


def loads(body: bytes) -> Any:
    """Parse ``body`` as strict UTF-8 JSON; raises InvalidJson."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("the body is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise InvalidJson("the body starts with a byte order mark; send UTF-8 without one")
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        raise InvalidJson(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        return _DECODER.decode(text)
    except InvalidJson:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"not valid JSON ({type(exc).__name__})") from None
