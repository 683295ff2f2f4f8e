"""The order planner: pure arithmetic from positions, live quotes, cash and targets to orders.

It finds the whole-share portfolio closest to the targets whose cash, after every order's
commission and a slippage margin, stays at or above the reserve. README.md ("How a rebalance
computes its orders") walks through it with numbers; in short, for a reference value N:

1. Each target symbol is worth ``V = weight % × (1 − reserve %) × N``: ``x = V / mark`` shares.
2. Held symbols outside the targets (or at weight 0) are sold whole, whatever their size.
   A target symbol is left alone when it is within one share of ``x`` or within the drift band
   (``|value − V| ≤ drift_band_percent % of V``); the others are traded toward ``round(x)``.
3. BUYs are budgeted at the ask plus the slippage margin, SELLs at the bid minus it, each order
   with its commission. If the cash after them would fall below ``reserve % × value after``, the
   BUYs are cut, all to the same dollar shortfall, then topped up share by share while the cash
   allows (a water-filling of the squared distance to the targets).
4. An order worth less than ``min_order_value`` is dropped (never a liquidation) and the rest
   planned again without it.

N is the value the portfolio will have after the plan's own costs, found by planning again until
it no longer changes, so that planning on the plan's outcome finds every holding where it was
left: an immediate re-run places no order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from event_processor.rebalancing.costs import Costs
from event_queue.weights import InvalidTargets, check_cash_reserve, check_weights

Action = Literal["BUY", "SELL"]
# Float noise allowance when comparing share counts (e.g. 2.9999999999 means 3).
SHARE_EPSILON = 1e-9
# Planning rounds to find the value after the plan's own costs; two are the rule.
MAX_ROUNDS = 8
# Steps of the search for the common dollar shortfall of cut BUYs.
SHORTFALL_STEPS = 60
# Swap moves made at most after the top-up (each one strictly closer, so few are ever made), and
# the BUYs tried for each.
MAX_SWAPS = 32
SWAP_CANDIDATES = 8
# A swap must come closer by more than float noise.
GAIN_EPSILON = 1e-9


class PlanError(ValueError):
    """The inputs cannot be planned (missing or bad price, bad targets, nothing to invest)."""


@dataclass(frozen=True)
class Price:
    """A live two-sided quote: where a SELL and a BUY execute, and the value of a held share."""

    bid: float
    ask: float
    mark: float


@dataclass(frozen=True)
class Tolerance:
    """How far a holding may be from its target before it is traded, and the smallest order."""

    drift_band_percent: float = 0.0
    min_order_value: float = 0.0


@dataclass(frozen=True)
class PlannedOrder:
    """One whole-share order, the price per share and the commission it is budgeted at."""

    symbol: str
    action: Action
    quantity: int
    price: float
    commission: float

    @property
    def value(self) -> float:
        """Quantity × budgeted price."""
        return self.quantity * self.price


@dataclass(frozen=True)
class Line:
    """One symbol of the plan: its target, where it is, where the plan takes it, and why."""

    symbol: str
    target_weight: float
    target_shares: float
    current: float
    planned: float
    price: Price
    order: PlannedOrder | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        order = self.order
        return {
            "symbol": self.symbol, "target_weight": self.target_weight,
            "price": self.price.mark, "bid": self.price.bid, "ask": self.price.ask,
            "target_shares": _round(self.target_shares), "current": self.current,
            "planned": self.planned,
            "order": None if order is None else {
                "action": order.action, "quantity": order.quantity, "price": _round(order.price),
                "commission": order.commission},
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    """The orders of one rebalance and the portfolio they lead to, budgeted at worst-case prices."""

    net_liquidation: float
    cash_before: float
    cash_reserve_percent: float
    reference_value: float
    lines: tuple[Line, ...]
    cash_limited: bool
    cash_after: float = field(init=False)
    net_liquidation_after: float = field(init=False)

    def __post_init__(self) -> None:
        flow = sum(_flow(o) for o in self.orders)
        held = sum(line.planned * line.price.mark for line in self.lines)
        object.__setattr__(self, "cash_after", self.cash_before + flow)
        object.__setattr__(self, "net_liquidation_after", self.cash_before + flow + held)

    @property
    def reserve(self) -> float:
        """The cash the plan keeps: the reserve percentage of the value after the plan."""
        return self.net_liquidation_after * self.cash_reserve_percent / 100

    @property
    def orders(self) -> list[PlannedOrder]:
        """SELLs, then BUYs, each by symbol."""
        orders = [line.order for line in self.lines if line.order is not None]
        return sorted(orders, key=lambda o: (o.action == "BUY", o.symbol))

    @property
    def sells(self) -> list[PlannedOrder]:
        """The SELL orders, in order."""
        return [o for o in self.orders if o.action == "SELL"]

    @property
    def buys(self) -> list[PlannedOrder]:
        """The BUY orders, in order."""
        return [o for o in self.orders if o.action == "BUY"]

    @property
    def positions_after(self) -> dict[str, float]:
        """Holdings once every order filled."""
        return {line.symbol: line.planned for line in self.lines if line.planned}

    @property
    def commissions(self) -> float:
        """The commissions budgeted for every order."""
        return sum(o.commission for o in self.orders)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for the event's result."""
        before, after = self.net_liquidation, self.net_liquidation_after
        lines = []
        for line in self.lines:
            entry = line.to_dict()
            entry["weight_before"] = _round(line.current * line.price.mark / before * 100)
            entry["weight_after"] = _round(line.planned * line.price.mark / after * 100)
            lines.append(entry)
        return {
            "net_liquidation": _round(before), "net_liquidation_after": _round(after),
            "cash_before": _round(self.cash_before), "cash_after": _round(self.cash_after),
            "cash_reserve_percent": self.cash_reserve_percent, "reserve": _round(self.reserve),
            "commissions": _round(self.commissions), "cash_limited": self.cash_limited,
            "orders": [{"symbol": o.symbol, "action": o.action, "quantity": o.quantity,
                        "price": _round(o.price), "commission": o.commission} for o in self.orders],
            "symbols": lines,
        }


def make_plan(
    *,
    positions: Mapping[str, float],
    prices: Mapping[str, Price],
    cash: float,
    targets: Mapping[str, float],
    cash_reserve_percent: float = 0.0,
    costs: Costs | None = None,
    tolerance: Tolerance | None = None,
) -> Plan:
    """Plan the orders that bring ``positions`` closest to ``targets`` (percent per symbol).

    ``prices`` needs a live quote for every held and every target symbol. Raises PlanError.
    """
    _check_inputs(positions, prices, targets, cash_reserve_percent)
    book = _Book(positions=positions, prices=prices, cash=cash, targets=targets,
                 reserve=cash_reserve_percent / 100, costs=costs or Costs(),
                 tolerance=tolerance or Tolerance())
    reference = book.net_liquidation
    if reference <= 0:
        raise PlanError(f"net liquidation is not positive ({reference:.2f})")
    tried: set[float] = set()
    plan = book.plan_at(reference)
    for _ in range(MAX_ROUNDS):
        after = plan.net_liquidation_after
        if after == reference or after in tried or after <= 0:
            break
        tried.add(reference)
        reference = after
        plan = book.plan_at(reference)
    return plan


def refit_buys(
    plan: Plan,
    *,
    positions: Mapping[str, float],
    cash: float,
    prices: Mapping[str, Price],
    costs: Costs | None = None,
    tolerance: Tolerance | None = None,
) -> tuple[list[PlannedOrder], dict[str, str]]:
    """The plan's BUYs fitted again to the cash and prices there are once its SELLs filled.

    Never more shares than planned; the same reserve rule, cut and top-up as the plan. Returns
    the BUYs to place and, for each one cut or dropped, why.
    """
    wanted = {o.symbol: o.quantity for o in plan.buys}
    if not wanted:
        return [], {}
    known = {line.symbol: line.price for line in plan.lines}
    book = _Book(positions=positions, prices={**known, **prices}, cash=cash,
                 targets={line.symbol: line.target_weight for line in plan.lines
                          if line.target_weight > 0},
                 reserve=plan.cash_reserve_percent / 100, costs=costs or Costs(),
                 tolerance=tolerance or Tolerance())
    goals = {s: _Goal(wanted.get(s, 0), s not in wanted) for s in book.symbols}
    floor = min(0.0, book.slack({}))
    deltas, _ = book.fit(goals, floor, plan.reference_value)
    small = book.too_small(goals, deltas)
    orders: list[PlannedOrder] = []
    reasons: dict[str, str] = {}
    for symbol in sorted(wanted):
        order = book.order(symbol, deltas[symbol])
        if symbol in small or order is None:
            reasons[symbol] = (small[symbol].reason if symbol in small else None) or \
                "cash after the sells: no share of it fits above the reserve"
            continue
        orders.append(order)
        if order.quantity < wanted[symbol]:
            reasons[symbol] = (f"cash after the sells: {order.quantity} of the planned "
                               f"{wanted[symbol]} shares fit above the reserve")
    return orders, reasons


@dataclass(frozen=True)
class _Goal:
    """Where one symbol should go: a fixed change, or a change the cash fitting may cut."""

    delta: int
    fixed: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class _Book:
    """The inputs of one plan and the arithmetic over them (shares, cash, reserve)."""

    positions: Mapping[str, float]
    prices: Mapping[str, Price]
    cash: float
    targets: Mapping[str, float]
    reserve: float
    costs: Costs
    tolerance: Tolerance

    @property
    def symbols(self) -> list[str]:
        held = {s for s, q in self.positions.items() if q}
        return sorted(set(self.targets) | held)

    @property
    def net_liquidation(self) -> float:
        return self.cash + sum(self.held(s) * self.prices[s].mark for s in self.symbols)

    def held(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def ideal(self, symbol: str, reference: float) -> float:
        """Shares worth the symbol's target at the reference value."""
        value = self.targets.get(symbol, 0.0) / 100 * (1 - self.reserve) * reference
        return value / self.prices[symbol].mark

    # -- the cash arithmetic --------------------------------------------------------------------

    def order(self, symbol: str, delta: int) -> PlannedOrder | None:
        """The order that changes the holding by ``delta`` shares, budgeted."""
        if delta == 0:
            return None
        price = self.prices[symbol]
        action: Action = "BUY" if delta > 0 else "SELL"
        quantity = abs(delta)
        unit = self.costs.buy_price(price.ask) if delta > 0 else self.costs.sell_price(price.bid)
        return PlannedOrder(symbol, action, quantity, unit,
                            self.costs.commission(action, quantity, price.ask))

    def slack(self, deltas: Mapping[str, int]) -> float:
        """Cash after the orders beyond the reserve, in cash terms: (1 − r)·cash − r·holdings.

        At or above 0 the reserve percentage of the value after the plan is kept.
        """
        return (1 - self.reserve) * self.cash - sum(
            self.burden(s, deltas.get(s, 0)) for s in self.symbols)

    def burden(self, symbol: str, delta: int) -> float:
        """What holding ``held + delta`` shares of ``symbol`` takes from the slack."""
        order = self.order(symbol, delta)
        spent = -_flow(order) if order is not None else 0.0
        holdings = (self.held(symbol) + delta) * self.prices[symbol].mark
        return (1 - self.reserve) * spent + self.reserve * holdings

    # -- one plan at a reference value -----------------------------------------------------------

    def plan_at(self, reference: float) -> Plan:
        goals = {s: self.goal(s, reference) for s in self.symbols}
        floor = min(0.0, self.slack({s: g.delta for s, g in goals.items() if g.fixed}))
        while True:
            deltas, limited = self.fit(goals, floor, reference)
            small = self.too_small(goals, deltas)
            if not small:
                break
            goals.update(small)
        lines = tuple(self.line(s, goals[s], deltas[s], reference) for s in self.symbols)
        return Plan(net_liquidation=self.net_liquidation, cash_before=self.cash,
                    cash_reserve_percent=self.reserve * 100, reference_value=reference,
                    lines=lines, cash_limited=limited)

    def goal(self, symbol: str, reference: float) -> _Goal:
        held = self.held(symbol)
        weight = self.targets.get(symbol, 0.0)
        if weight == 0:
            return self._liquidation(symbol, held)
        ideal = self.ideal(symbol, reference)
        if held == 0 and ideal < 0.5:
            return _Goal(0, True, f"the target is {ideal:.2f} shares: less than half a share at "
                                  "this price, so whole shares cannot come closer than none")
        if abs(ideal - held) < 1 and held > 0:
            return _Goal(0, True, "within one share of the target")
        drift = abs(held - ideal) / ideal * 100 if ideal > 0 else math.inf
        if drift <= self.tolerance.drift_band_percent:
            return _Goal(0, True, f"within the drift band ({drift:.2f} % of the target, band "
                                  f"{self.tolerance.drift_band_percent:g} %)")
        return _Goal(math.floor(ideal - held + 0.5), False)

    def _liquidation(self, symbol: str, held: float) -> _Goal:
        whole = math.floor(held + SHARE_EPSILON)
        reason = "not in the targets: sold whole, whatever its size" if symbol not in self.targets \
            else "target weight 0: sold whole"
        if held - whole > SHARE_EPSILON:
            reason += f"; the fraction {held - whole:g} of a share cannot be sold in whole shares"
        return _Goal(-whole, True, reason if held else None)

    def fit(self, goals: Mapping[str, _Goal], floor: float,
            reference: float) -> tuple[dict[str, int], bool]:
        """The goals, with BUYs cut as little as possible so the slack stays at or above floor."""
        deltas = {s: g.delta for s, g in goals.items()}
        if self.slack(deltas) >= floor:
            return deltas, False
        buys = [s for s, g in goals.items() if not g.fixed and g.delta > 0]
        shortfall = self._common_shortfall(deltas, buys, floor, reference)
        deltas.update({s: self._cut(s, goals[s].delta, shortfall, reference) for s in buys})
        self._top_up(deltas, goals, buys, floor, reference)
        for _ in range(MAX_SWAPS):
            if not self._swap(deltas, goals, buys, floor, reference):
                break
            self._top_up(deltas, goals, buys, floor, reference)  # what the swap left over
        return deltas, True

    def _cut(self, symbol: str, delta: int, shortfall: float, reference: float) -> int:
        """The BUY of ``symbol`` leaving it ``shortfall`` dollars under its target (at most delta)."""
        mark = self.prices[symbol].mark
        shares = self.ideal(symbol, reference) - shortfall / mark - self.held(symbol)
        return max(0, min(delta, math.floor(shares + SHARE_EPSILON)))

    def _common_shortfall(self, deltas: dict[str, int], buys: list[str], floor: float,
                          reference: float) -> float:
        """The smallest dollar shortfall, the same for every BUY, that keeps the slack."""
        low, high = 0.0, max(self.ideal(s, reference) * self.prices[s].mark for s in buys)
        for _ in range(SHORTFALL_STEPS):
            middle = (low + high) / 2
            trial = {**deltas, **{s: self._cut(s, deltas[s], middle, reference) for s in buys}}
            if self.slack(trial) >= floor:
                high = middle
            else:
                low = middle
        return high

    def _top_up(self, deltas: dict[str, int], goals: Mapping[str, _Goal], buys: list[str],
                floor: float, reference: float) -> None:
        """Add single shares, the one closing the most squared distance per dollar first, while
        the slack stays at or above floor."""
        slack = self.slack(deltas)
        while True:
            best, gain, best_cost = None, 0.0, 0.0
            for symbol in buys:
                delta = deltas[symbol]
                if delta >= goals[symbol].delta:
                    continue
                cost = self.burden(symbol, delta + 1) - self.burden(symbol, delta)
                improvement = self._improvement(symbol, delta, reference)
                if slack - cost >= floor and improvement / cost > gain:
                    best, gain, best_cost = symbol, improvement / cost, cost
            if best is None:
                return
            deltas[best] += 1
            slack -= best_cost

    def _swap(self, deltas: dict[str, int], goals: Mapping[str, _Goal], buys: list[str],
              floor: float, reference: float) -> bool:
        """Make the best move "one more share of a BUY, paid for by fewer shares of the others"
        that brings the portfolio closer to the targets; False when there is none.

        Whole shares make the cut a knapsack: topping up the cheapest shares first can leave an
        expensive share out although giving up a few cheap ones for it comes closer. The BUYs whose
        next share would close the most distance per dollar are tried.
        """
        open_buys = [s for s in buys if deltas[s] < goals[s].delta]
        candidates = sorted(open_buys, key=lambda s: (-self._value_per_dollar(s, deltas[s],
                                                                               reference), s))
        best: dict[str, int] | None = None
        best_gain = 0.0
        slack = self.slack(deltas)
        for symbol in candidates[:SWAP_CANDIDATES]:
            trial = self._paid_for(deltas, symbol, buys, slack, floor, reference)
            if trial is None:
                continue
            gain = sum(self._gap(s, deltas[s], reference) - self._gap(s, trial[s], reference)
                       for s in trial)
            if gain > best_gain + GAIN_EPSILON:
                best, best_gain = trial, gain
        if best is None:
            return False
        deltas.update(best)
        return True

    def _paid_for(self, deltas: Mapping[str, int], symbol: str, buys: list[str], slack: float,
                  floor: float, reference: float) -> dict[str, int] | None:
        """The changed BUYs: one more share of ``symbol``, and as few shares of the others fewer
        as pay for it (the least distance lost per dollar first); None if they cannot."""
        trial = {symbol: deltas[symbol] + 1}
        slack -= self.burden(symbol, trial[symbol]) - self.burden(symbol, deltas[symbol])
        givers = [(self._value_per_dollar(s, deltas[s] - 1, reference), s)
                  for s in buys if s != symbol and deltas[s] > 0]
        heapq.heapify(givers)
        giver = symbol  # no giver yet: the give-back below then does nothing
        while slack < floor:
            if not givers:
                return None
            value, giver = heapq.heappop(givers)
            held = trial.get(giver, deltas[giver])
            shares = self._shares_to_give(giver, held, floor - slack, value,
                                          givers[0][0] if givers else math.inf)
            slack += self.burden(giver, held) - self.burden(giver, held - shares)
            trial[giver] = held - shares
            if held - shares > 0:
                heapq.heappush(givers, (self._value_per_dollar(giver, held - shares - 1,
                                                               reference), giver))
        while giver != symbol and trial[giver] < deltas[giver]:  # cents: the estimate may overshoot
            back = self.burden(giver, trial[giver] + 1) - self.burden(giver, trial[giver])
            if slack - back < floor:
                break
            slack -= back
            trial[giver] += 1
        return trial

    def _shares_to_give(self, giver: str, delta: int, needed: float, value: float,
                        next_value: float) -> int:
        """How many shares ``giver`` gives at once: enough to free ``needed``, but no more than
        keep it the cheapest giver (its loss per dollar grows by 2·mark²/cost per share)."""
        freed = self.burden(giver, delta) - self.burden(giver, delta - 1)
        mark = self.prices[giver].mark
        enough = math.ceil(needed / freed)
        cheapest = math.floor((next_value - value) * freed / (2 * mark * mark)) + 1 \
            if math.isfinite(next_value) else enough
        return max(1, min(delta, enough, cheapest))

    def _value_per_dollar(self, symbol: str, delta: int, reference: float) -> float:
        """Squared distance one more share (on top of ``delta``) closes, per dollar of slack."""
        cost = self.burden(symbol, delta + 1) - self.burden(symbol, delta)
        return self._improvement(symbol, delta, reference) / cost

    def _gap(self, symbol: str, delta: int, reference: float) -> float:
        """Squared dollar distance of the holding from its target."""
        mark = self.prices[symbol].mark
        gap = (self.held(symbol) + delta - self.ideal(symbol, reference)) * mark
        return gap * gap

    def _improvement(self, symbol: str, delta: int, reference: float) -> float:
        """How much one more share reduces the squared dollar distance to the target."""
        mark = self.prices[symbol].mark
        target = self.ideal(symbol, reference) * mark
        now = (self.held(symbol) + delta) * mark - target
        return now * now - (now + mark) ** 2

    def too_small(self, goals: Mapping[str, _Goal],
                  deltas: Mapping[str, int]) -> dict[str, _Goal]:
        """Trades worth less than min_order_value, to be left out (never a liquidation)."""
        small = {}
        for symbol, goal in goals.items():
            order = self.order(symbol, deltas[symbol])
            if goal.fixed or order is None or order.value >= self.tolerance.min_order_value:
                continue
            small[symbol] = _Goal(0, True, f"{order.action} {order.quantity} worth "
                                           f"{order.value:.2f} is below min_order_value "
                                           f"{self.tolerance.min_order_value:g}")
        return small

    def line(self, symbol: str, goal: _Goal, delta: int, reference: float) -> Line:
        held = self.held(symbol)
        ideal = self.ideal(symbol, reference)
        return Line(symbol=symbol, target_weight=self.targets.get(symbol, 0.0),
                    target_shares=ideal, current=held, planned=held + delta,
                    price=self.prices[symbol], order=self.order(symbol, delta),
                    reason=goal.reason if goal.fixed else _shortfall_reason(goal.delta, delta))


def _shortfall_reason(goal: int, delta: int) -> str | None:
    if delta != goal:
        return (f"cash: the reserve, commissions and slippage allow {abs(delta)} of the "
                f"{abs(goal)} shares that reach the target")
    return None


def _flow(order: PlannedOrder) -> float:
    """Cash the order brings (SELL) or takes (BUY), commission included."""
    sign = 1 if order.action == "SELL" else -1
    return sign * order.value - order.commission


def _check_inputs(
    positions: Mapping[str, float], prices: Mapping[str, Price], targets: Mapping[str, float],
    cash_reserve_percent: float,
) -> None:
    try:
        check_weights(targets)
        check_cash_reserve(cash_reserve_percent)
    except InvalidTargets as exc:
        raise PlanError(str(exc)) from None
    needed = set(targets) | {s for s, q in positions.items() if q}
    bad = sorted(s for s in needed if s not in prices or not _valid(prices[s]))
    if bad:
        raise PlanError(f"no valid price for {', '.join(bad)}")
    negative = sorted(s for s, q in positions.items() if q < 0 or not math.isfinite(q))
    if negative:
        raise PlanError(f"short or unreadable positions are not supported: {', '.join(negative)}")


def _valid(price: Price) -> bool:
    values = (price.bid, price.ask, price.mark)
    return all(math.isfinite(v) and v > 0 for v in values) and price.bid <= price.ask


def _round(value: float) -> float:
    return round(value, 4)
