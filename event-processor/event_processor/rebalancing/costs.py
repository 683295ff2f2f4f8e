"""What an order costs: IBKR's commission of the account's plan, and the slippage margin.

The planner budgets every order at a worst case it can name: BUYs at the ask plus
``slippage_percent``, SELLs at the bid minus it, and the commission of the whole order computed at
the higher of the two prices (the 1 % cap and the SEC fee grow with the trade value), rounded up to
the cent. IBKR charges per order, so one order of 20 shares costs one minimum, two of 10 cost two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from event_processor.config import CommissionConfig

Action = Literal["BUY", "SELL"]
SEC_FEE_RATE = 0.0000278  # USD per USD of sale value (SEC Section 31 fee)
TAF_PER_SHARE = 0.000166  # USD per share sold (FINRA trading activity fee)
TAF_MAXIMUM = 8.30  # USD per trade


@dataclass(frozen=True)
class CommissionPlan:
    """IBKR Pro's pricing of one US stock order: commission per share with a minimum and a cap
    (percent of the trade value), fees per share, and the SEC fee and TAF of sales."""

    model: str
    per_share: float
    minimum: float
    maximum_percent: float
    fees_per_share: float
    sec_fee_rate: float
    taf_per_share: float
    taf_maximum: float

    @classmethod
    def from_config(cls, config: CommissionConfig) -> CommissionPlan:
        """IBKR's published plan of ``config.model`` with the configured figures overridden."""
        overrides = {f.name: getattr(config, f.name) for f in fields(cls)
                     if f.name != "model" and getattr(config, f.name) is not None}
        return replace(PLANS[config.model], **overrides)

    def charge(self, action: Action, quantity: int, price: float) -> float:
        """Commission and fees of one order of ``quantity`` shares at ``price``, up to the cent."""
        if quantity <= 0:
            return 0.0
        value = quantity * price
        commission = min(max(quantity * self.per_share, self.minimum),
                         value * self.maximum_percent / 100)
        fees = quantity * self.fees_per_share
        if action == "SELL":
            fees += value * self.sec_fee_rate + min(quantity * self.taf_per_share, self.taf_maximum)
        return math.ceil(round((commission + fees) * 100, 6)) / 100


PLANS: dict[str, CommissionPlan] = {
    "fixed": CommissionPlan("fixed", 0.005, 1.0, 1.0, 0.0, SEC_FEE_RATE, TAF_PER_SHARE,
                            TAF_MAXIMUM),
    "tiered": CommissionPlan("tiered", 0.0035, 0.35, 1.0, 0.0035, SEC_FEE_RATE, TAF_PER_SHARE,
                             TAF_MAXIMUM),
}
FREE = CommissionPlan("free", 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Costs:
    """The commission plan and the slippage margin every order is budgeted with."""

    commissions: CommissionPlan = FREE
    slippage_percent: float = 0.0

    def buy_price(self, ask: float) -> float:
        """The most a BUY is budgeted to pay per share."""
        return ask * (1 + self.slippage_percent / 100)

    def sell_price(self, bid: float) -> float:
        """The least a SELL is budgeted to get per share."""
        return bid * (1 - self.slippage_percent / 100)

    def commission(self, action: Action, quantity: int, ask: float) -> float:
        """The commission budgeted for an order of either side, at the highest price it may trade
        at (the ask plus the margin): the 1 % cap and the SEC fee only grow with the price."""
        return self.commissions.charge(action, quantity, self.buy_price(ask))
