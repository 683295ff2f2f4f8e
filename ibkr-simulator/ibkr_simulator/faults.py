"""Faults the tests can inject into the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import IN_MESSAGE_IDS


@dataclass
class OrderRejection:
    """Reject the next order with this IB error code and text."""

    code: int
    text: str


@dataclass
class Faults:
    """The current fault settings (all off by default)."""

    refuse_connections: bool = False
    unanswered: set[int] = field(default_factory=set)
    reject_next: OrderRejection | None = None
    fill_delay: float = 0.0
    partial_fill_qty: float | None = None

    def clear(self) -> None:
        """Switch every fault off."""
        self.refuse_connections = False
        self.unanswered.clear()
        self.reject_next = None
        self.fill_delay = 0.0
        self.partial_fill_qty = None

    def take_rejection(self) -> OrderRejection | None:
        """The pending one-shot rejection, consumed."""
        rejection, self.reject_next = self.reject_next, None
        return rejection

    def take_partial(self) -> float | None:
        """The pending one-shot partial fill quantity, consumed."""
        qty, self.partial_fill_qty = self.partial_fill_qty, None
        return qty

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the admin state view."""
        names = {v: k for k, v in IN_MESSAGE_IDS.items()}
        return {
            "refuse_connections": self.refuse_connections,
            "unanswered": sorted(names.get(i, str(i)) for i in self.unanswered),
            "reject_next": vars(self.reject_next) if self.reject_next else None,
            "fill_delay": self.fill_delay,
            "partial_fill_qty": self.partial_fill_qty,
        }


def request_id_for(request: str | int) -> int:
    """Message id of a request given by name ("reqExecutions") or number (7)."""
    if isinstance(request, int) or str(request).isdigit():
        return int(request)
    try:
        return IN_MESSAGE_IDS[str(request)]
    except KeyError:
        raise ValueError(f"unknown request type {request!r}") from None
