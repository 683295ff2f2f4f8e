"""Orders and executions, and the rules deciding when and at what price an order fills."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .market import Quote

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "MOC"})
ACTIVE_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})


@dataclass
class OrderRequest:
    """The parts of a client's placeOrder message the simulator acts on."""

    order_id: int
    symbol: str
    con_id: int
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    what_if: bool
    transmit: bool = True
    parent_id: int = 0


@dataclass
class SimOrder:
    """An order the simulator accepted, and its progress."""

    client_id: int
    order_id: int
    perm_id: int
    account: str
    symbol: str
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    tif: str
    order_ref: str
    status: str = "PendingSubmit"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float = 0.0
    completed_time: str = ""
    completed_status: str = ""
    fill_scheduled: bool = False
    hold_remainder: bool = False
    received_at: float = field(default_factory=time.time)  # when the order reached the simulator

    @property
    def remaining(self) -> float:
        """Shares not yet filled."""
        return max(self.quantity - self.filled, 0.0)

    @property
    def is_active(self) -> bool:
        """Still working (not filled, cancelled or rejected)."""
        return self.status in ACTIVE_STATUSES

    @property
    def sign(self) -> float:
        """+1 for BUY, -1 for SELL."""
        return 1.0 if self.action == "BUY" else -1.0

    def record_fill(self, qty: float, price: float, commission: float) -> None:
        """Update filled quantity, prices and commission after an execution."""
        total = self.filled + qty
        self.avg_fill_price = (self.avg_fill_price * self.filled + price * qty) / total
        self.filled = total
        self.last_fill_price = price
        self.commission += commission
        self.status = "Filled" if self.remaining <= 1e-9 else "Submitted"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the admin state view."""
        data = asdict(self)
        data["remaining"] = self.remaining
        return data


@dataclass
class Execution:
    """One fill of an order."""

    exec_id: str
    time: str
    client_id: int
    order_id: int
    perm_id: int
    account: str
    symbol: str
    side: str
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    realized_pnl: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the admin state view."""
        return asdict(self)


def fill_price(order: SimOrder, quote: Quote) -> float | None:
    """The price a MKT or LMT order fills at now, or None when it must rest.

    BUY orders take the ask and SELL orders the bid; a limit order fills only when that
    price is at or better than its limit. MOC orders fill only in the close auction.
    """
    if order.order_type == "MOC":
        return None
    price = quote.ask if order.action == "BUY" else quote.bid
    if price <= 0:
        return None
    if order.order_type == "LMT" and order.lmt_price is not None:
        marketable = price <= order.lmt_price if order.action == "BUY" else price >= order.lmt_price
        if not marketable:
            return None
    return price


def reference_price(order_type: str, action: str, lmt_price: float | None, quote: Quote) -> float:
    """The price used to check funds and estimate margin before an order fills."""
    if order_type == "LMT" and lmt_price is not None:
        return lmt_price
    side_price = quote.ask if action == "BUY" else quote.bid
    return side_price if side_price > 0 else quote.mark()
