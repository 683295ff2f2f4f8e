"""The order planner: pure arithmetic from positions, prices, cash and targets to orders.

Net liquidation = cash + Σ quantity × market price (never average cost). Investable = net
liquidation × (1 − cash_reserve_percent / 100). Each symbol's wanted quantity is
``investable × allocation% / price`` (held symbols outside the targets want 0). A symbol is traded
only when it is at least one whole share away from that, and then by the whole number of shares
that brings it within one share; orders worth less than ``min_order_value`` are skipped. So running
the plan and planning again gives no further orders: the second run converges, it never doubles.

SELLs come first. BUYs are paid from cash plus the sells' proceeds minus the reserve, each share
costed at ``price × (1 + buy_cost_buffer_percent / 100)`` (spread, slippage, commission); when they do
not fit they are scaled down, never up. Orders are sorted (sells, then buys, each by symbol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Action = Literal["BUY", "SELL"]
# Float noise allowance when comparing share counts (e.g. 2.9999999999 means 3).
SHARE_EPSILON = 1e-9


class PlanError(ValueError):
    """The inputs cannot be planned (missing or bad price, bad targets, nothing to invest)."""


@dataclass(frozen=True)
class PlannedOrder:
    """One whole-share order and the price it was sized with."""

    symbol: str
    action: Action
    quantity: int
    price: float

    @property
    def value(self) -> float:
        """Quantity × price."""
        return self.quantity * self.price


@dataclass(frozen=True)
class Skipped:
    """An order the plan left out, and why."""

    symbol: str
    action: Action
    quantity: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """The orders of one rebalance and the portfolio before and (if they fill at ``price``) after."""

    net_liquidation: float
    cash_before: float
    reserve: float
    investable: float
    orders: tuple[PlannedOrder, ...]
    skipped: tuple[Skipped, ...]
    target_weights: Mapping[str, float]
    weights_before: Mapping[str, float]
    positions_after: Mapping[str, float]
    prices: Mapping[str, float]
    scaled: bool = False
    cash_after: float = field(init=False)

    def __post_init__(self) -> None:
        flow = sum(o.value if o.action == "SELL" else -o.value for o in self.orders)
        object.__setattr__(self, "cash_after", self.cash_before + flow)

    @property
    def sells(self) -> list[PlannedOrder]:
        """The SELL orders, in order."""
        return [o for o in self.orders if o.action == "SELL"]

    @property
    def buys(self) -> list[PlannedOrder]:
        """The BUY orders, in order."""
        return [o for o in self.orders if o.action == "BUY"]

    @property
    def weights_after(self) -> dict[str, float]:
        """Percent of net liquidation per symbol once every order filled at its price."""
        return _weights(self.positions_after, self.prices, self.net_liquidation)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for the event's result."""
        return {
            "net_liquidation": _round(self.net_liquidation), "cash_before": _round(self.cash_before),
            "reserve": _round(self.reserve), "investable": _round(self.investable),
            "cash_after": _round(self.cash_after), "scaled_to_fit_cash": self.scaled,
            "orders": [{"symbol": o.symbol, "action": o.action, "quantity": o.quantity,
                        "price": o.price, "value": _round(o.value)} for o in self.orders],
            "skipped": [{"symbol": s.symbol, "action": s.action, "quantity": s.quantity,
                         "reason": s.reason} for s in self.skipped],
            "target_weights": {k: _round(v) for k, v in self.target_weights.items()},
            "weights_before": {k: _round(v) for k, v in self.weights_before.items()},
            "weights_after": {k: _round(v) for k, v in self.weights_after.items()},
        }


def make_plan(
    *,
    positions: Mapping[str, float],
    prices: Mapping[str, float],
    cash: float,
    targets: Mapping[str, float],
    cash_reserve_percent: float = 0.0,
    min_order_value: float = 0.0,
    buy_cost_buffer_percent: float = 0.0,
) -> Plan:
    """Plan the orders that bring ``positions`` to ``targets`` (percent per symbol).

    ``prices`` needs one positive price for every held and every target symbol. Raises PlanError.
    """
    _check_inputs(positions, prices, targets, cash_reserve_percent)
    symbols = sorted(set(targets) | {s for s, q in positions.items() if q})
    net = cash + sum(positions.get(s, 0.0) * prices[s] for s in symbols)
    if net <= 0:
        raise PlanError(f"net liquidation is not positive ({net:.2f})")
    reserve = net * cash_reserve_percent / 100
    investable = net - reserve
    wanted = {s: investable * targets.get(s, 0.0) / 100 / prices[s] for s in symbols}
    orders, skipped = _orders_toward(positions, wanted, prices, min_order_value)
    sells = [o for o in orders if o.action == "SELL"]
    budget = cash + sum(o.value for o in sells) - reserve
    buys, more_skipped, scaled = fit_buys(
        [o for o in orders if o.action == "BUY"], budget=budget,
        cost_factor=1 + buy_cost_buffer_percent / 100, min_order_value=min_order_value)
    final = (*sells, *buys)
    return Plan(
        net_liquidation=net, cash_before=cash, reserve=reserve, investable=investable,
        orders=final, skipped=(*skipped, *more_skipped),
        target_weights={s: targets.get(s, 0.0) for s in symbols},
        weights_before=_weights(positions, prices, net),
        positions_after=_apply(positions, final), prices=dict(prices), scaled=scaled)


def fit_buys(
    buys: list[PlannedOrder], *, budget: float, cost_factor: float = 1.0, min_order_value: float = 0.0
) -> tuple[list[PlannedOrder], list[Skipped], bool]:
    """Scale ``buys`` down so that Σ quantity × price × cost_factor ≤ budget.

    Returns the buys that remain (same order), those dropped, and whether anything was scaled.
    Quantities are scaled in proportion, rounded down, then topped up one share at a time (largest
    shortfall first) while the budget allows. Nothing is ever scaled up.
    """
    cost = sum(o.value for o in buys) * cost_factor
    if not buys or cost <= budget:
        return list(buys), [], False
    factor = max(budget, 0.0) / cost
    quantities = {o.symbol: math.floor(o.quantity * factor + SHARE_EPSILON) for o in buys}
    spent = sum(quantities[o.symbol] * o.price * cost_factor for o in buys)
    for order in sorted(buys, key=lambda o: (-(o.quantity - quantities[o.symbol]) * o.price,
                                             o.symbol)):
        share_cost = order.price * cost_factor
        if quantities[order.symbol] < order.quantity and spent + share_cost <= budget:
            quantities[order.symbol] += 1
            spent += share_cost
    return _keep_fitted(buys, quantities, min_order_value)


def _keep_fitted(
    buys: list[PlannedOrder], quantities: Mapping[str, int], min_order_value: float
) -> tuple[list[PlannedOrder], list[Skipped], bool]:
    kept: list[PlannedOrder] = []
    dropped: list[Skipped] = []
    for order in buys:
        fitted = replace(order, quantity=quantities[order.symbol])
        if fitted.quantity >= 1 and fitted.value >= min_order_value:
            kept.append(fitted)
        else:
            dropped.append(Skipped(order.symbol, "BUY", order.quantity, "no cash left after reserve"))
    return kept, dropped, True


def _orders_toward(
    positions: Mapping[str, float], wanted: Mapping[str, float], prices: Mapping[str, float],
    min_order_value: float,
) -> tuple[list[PlannedOrder], list[Skipped]]:
    orders: list[PlannedOrder] = []
    skipped: list[Skipped] = []
    for symbol, target in wanted.items():
        held = positions.get(symbol, 0.0)
        gap = target - held
        quantity = math.floor(abs(gap) + SHARE_EPSILON)
        if gap < 0:
            quantity = min(quantity, math.floor(held + SHARE_EPSILON))
        if quantity < 1:
            continue
        order = PlannedOrder(symbol, "BUY" if gap > 0 else "SELL", quantity, prices[symbol])
        if order.value < min_order_value:
            skipped.append(Skipped(symbol, order.action, quantity, "below min_order_value"))
        else:
            orders.append(order)
    return orders, skipped


def _check_inputs(
    positions: Mapping[str, float], prices: Mapping[str, float], targets: Mapping[str, float],
    cash_reserve_percent: float,
) -> None:
    if not 0 <= cash_reserve_percent < 100:
        raise PlanError(f"cash_reserve_percent must be in [0, 100): {cash_reserve_percent}")
    if any(not 0 <= w <= 100 for w in targets.values()):
        raise PlanError("every allocation must be between 0 and 100 percent")
    if sum(targets.values()) > 100 + 1e-9:
        raise PlanError("allocations add up to more than 100 percent")
    needed = set(targets) | {s for s, q in positions.items() if q}
    bad = sorted(s for s in needed if not _valid_price(prices.get(s)))
    if bad:
        raise PlanError(f"no valid price for {', '.join(bad)}")
    negative = sorted(s for s, q in positions.items() if q < 0)
    if negative:
        raise PlanError(f"short positions are not supported: {', '.join(negative)}")


def _valid_price(price: float | None) -> bool:
    return price is not None and math.isfinite(price) and price > 0


def _apply(positions: Mapping[str, float], orders: tuple[PlannedOrder, ...]) -> dict[str, float]:
    after = {s: q for s, q in positions.items() if q}
    for order in orders:
        change = order.quantity if order.action == "BUY" else -order.quantity
        after[order.symbol] = after.get(order.symbol, 0.0) + change
    return {s: q for s, q in sorted(after.items()) if q}


def _weights(
    positions: Mapping[str, float], prices: Mapping[str, float], net: float
) -> dict[str, float]:
    return {s: q * prices[s] / net * 100 for s, q in sorted(positions.items()) if q}


def _round(value: float) -> float:
    return round(value, 4)
