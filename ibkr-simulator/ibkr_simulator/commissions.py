"""IBKR Pro's pricing of US stock orders: a commission per share with a minimum and a cap, plus fees.

Two plans, as IBKR publishes them (per order, in USD):

* **fixed**: 0.005 per share, at least 1.00, at most 1 % of the trade value; exchange and clearing
  fees are included, the SEC transaction fee and the FINRA trading activity fee (TAF) of sales are
  passed through.
* **tiered**: 0.0035 per share (the first volume tier), at least 0.35, at most 1 % of the trade value,
  plus exchange, clearing and pass-through fees per share (taken here as one figure, what a
  marketable order pays) and the same SEC fee and TAF on sales.

The simulator charges these on every fill; the processor budgets them with its own, independent
implementation, so a test sees the two disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

SEC_FEE_RATE = 0.0000278  # USD per USD of sale value
TAF_PER_SHARE = 0.000166  # USD per share sold
TAF_MAXIMUM = 8.30  # USD per trade


@dataclass(frozen=True)
class CommissionPlan:
    """How one fill is charged. ``fees_per_share`` is not capped; the regulatory fees apply to sales."""

    model: str = "fixed"
    per_share: float = 0.005
    minimum: float = 1.0
    maximum_percent: float = 1.0
    fees_per_share: float = 0.0
    sec_fee_rate: float = 0.0
    taf_per_share: float = 0.0
    taf_maximum: float = TAF_MAXIMUM

    def charge(self, action: str, quantity: float, price: float) -> float:
        """The commission and fees of one fill, rounded to the cent upward (never under-charged)."""
        shares = abs(quantity)
        value = shares * price
        commission = max(shares * self.per_share, self.minimum)
        if value > 0:
            commission = min(commission, value * self.maximum_percent / 100)
        fees = shares * self.fees_per_share
        if action == "SELL":
            fees += value * self.sec_fee_rate + min(shares * self.taf_per_share, self.taf_maximum)
        return math.ceil(round((commission + fees) * 100, 6)) / 100


PRESETS: dict[str, CommissionPlan] = {
    "fixed": CommissionPlan("fixed", 0.005, 1.0, 1.0, 0.0, SEC_FEE_RATE, TAF_PER_SHARE),
    "tiered": CommissionPlan("tiered", 0.0035, 0.35, 1.0, 0.0035, SEC_FEE_RATE, TAF_PER_SHARE),
}


def plan_from_dict(raw: dict[str, Any]) -> CommissionPlan:
    """A preset (``model: fixed`` or ``tiered``) with any field overridden."""
    model = str(raw.get("model", "fixed"))
    if model not in PRESETS:
        raise ValueError(f"commissions.model must be one of {sorted(PRESETS)}, not {model!r}")
    fields: dict[str, Any] = {k: float(v) for k, v in raw.items() if k != "model"}
    unknown = set(fields) - set(CommissionPlan.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown commissions keys: {', '.join(sorted(unknown))}")
    return replace(PRESETS[model], **fields)
