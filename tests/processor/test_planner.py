"""The order planner: worked examples and hypothesis properties over random portfolios, prices,
spreads, commission plans and tolerances (no I/O)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from event_processor.config import CommissionConfig
from event_processor.rebalancing.costs import PLANS, CommissionPlan, Costs
from event_processor.rebalancing.planner import Plan, PlanError, Price, Tolerance, make_plan

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
FIXED = Costs(PLANS["fixed"], 0.0)


def quote(mark: float, spread: float = 0.0) -> Price:
    """A quote around ``mark`` with ``spread`` percent between bid and ask."""
    return Price(bid=mark * (1 - spread / 200), ask=mark * (1 + spread / 200), mark=mark)


def kinds(plan: Plan) -> list[tuple[str, str, int]]:
    return [(o.action, o.symbol, o.quantity) for o in plan.orders]


# -- worked examples ----------------------------------------------------------------------------


def test_the_demo_account_reaches_balanced_and_a_rerun_places_nothing() -> None:
    prices = {"SPY": Price(509.98, 510.02, 510.0), "AGG": Price(98.49, 98.51, 98.5)}
    costs, tolerance = Costs(PLANS["fixed"], 0.1), Tolerance(5, 100)
    plan = make_plan(positions={"SPY": 100, "AGG": 200}, prices=prices, cash=100_000.0,
                     targets={"SPY": 60, "AGG": 38}, cash_reserve_percent=2, costs=costs,
                     tolerance=tolerance)
    assert kinds(plan) == [("BUY", "AGG", 445), ("BUY", "SPY", 97)]
    assert [o.commission for o in plan.orders] == [2.23, 1.0]  # 445 x 0.005 up to the cent; minimum
    assert plan.cash_after >= plan.reserve
    again = make_plan(positions=plan.positions_after, prices=prices, cash=plan.cash_after,
                      targets={"SPY": 60, "AGG": 38}, cash_reserve_percent=2, costs=costs,
                      tolerance=tolerance)
    assert again.orders == []


def test_the_commission_is_budgeted_so_a_buy_is_never_refused_for_it() -> None:
    """Cash 300.70, 100 % to a $30.00 ask: BUY 10 would need 301.00 with the $1 minimum."""
    plan = make_plan(positions={}, prices={"X": quote(30.0)}, cash=300.70, targets={"X": 100},
                     costs=FIXED)
    assert kinds(plan) == [("BUY", "X", 9)]
    assert plan.cash_after == pytest.approx(300.70 - 270 - 1)
    assert "allow 9 of the 10 shares" in (plan.lines[0].reason or "")


def test_the_reserve_is_kept_after_commissions() -> None:
    """3 % reserve of 310: BUY 10 at 30 with the $1 minimum leaves 9.00 < 9.30; BUY 9 leaves 39."""
    plan = make_plan(positions={}, prices={"X": quote(30.0)}, cash=310.0, targets={"X": 100},
                     cash_reserve_percent=3, costs=FIXED)
    assert kinds(plan) == [("BUY", "X", 9)]
    assert plan.cash_after >= plan.reserve


def test_sells_round_to_the_nearest_share_and_the_buys_end_within_one_share() -> None:
    """Fully invested at 100 %: the sale of the overweight symbol pays for the underweight ones."""
    prices = {"AAA": quote(97.0, 0.02), "BBB": quote(41.0, 0.02), "CCC": quote(13.0, 0.02)}
    targets = {"AAA": 40.0, "BBB": 35.0, "CCC": 25.0}
    plan = make_plan(positions={"AAA": 100, "BBB": 40, "CCC": 150}, prices=prices, cash=12.0,
                     targets=targets, costs=FIXED)
    for line in plan.lines:
        assert abs(line.planned - line.target_shares) < 1, line
    assert plan.cash_after >= 0


def test_a_holding_outside_the_targets_is_sold_whatever_its_size() -> None:
    plan = make_plan(positions={"AAA": 10, "TINY": 1}, prices={"AAA": quote(100.0),
                                                              "TINY": quote(3.0)},
                     cash=0.0, targets={"AAA": 100}, costs=FIXED,
                     tolerance=Tolerance(drift_band_percent=50, min_order_value=500))
    assert kinds(plan) == [("SELL", "TINY", 1)]  # 3.00 is below min_order_value: sold anyway
    assert plan.orders[0].commission == 0.04  # 1 % of the trade value caps the minimum, plus fees


def test_the_tolerance_band_and_min_order_value_leave_small_drifts_alone() -> None:
    prices = {"AAA": quote(10.0), "BBB": quote(10.0)}
    targets = {"AAA": 50, "BBB": 50}
    plan = make_plan(positions={"AAA": 520, "BBB": 480}, prices=prices, cash=0.0,
                     targets=targets, tolerance=Tolerance(drift_band_percent=5))
    assert plan.orders == []
    assert all("within the drift band" in (line.reason or "") for line in plan.lines)
    plan = make_plan(positions={"AAA": 520, "BBB": 480}, prices=prices, cash=0.0,
                     targets=targets, tolerance=Tolerance(drift_band_percent=1,
                                                          min_order_value=250))
    assert plan.orders == []
    assert all("below min_order_value 250" in (line.reason or "") for line in plan.lines)
    plan = make_plan(positions={"AAA": 520, "BBB": 480}, prices=prices, cash=0.0,
                     targets=targets, tolerance=Tolerance(drift_band_percent=1))
    assert kinds(plan) == [("SELL", "AAA", 20), ("BUY", "BBB", 20)]


def test_an_unreachable_target_says_why() -> None:
    plan = make_plan(positions={}, prices={"BIG": quote(6_000.0), "AAA": quote(10.0)},
                     cash=10_000.0, targets={"BIG": 20, "AAA": 80})
    [big] = [line for line in plan.lines if line.symbol == "BIG"]
    assert big.order is None
    assert "less than half a share" in (big.reason or "")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(PlanError, match="allocations is empty"):
        make_plan(positions={}, prices={}, cash=1.0, targets={})
    with pytest.raises(PlanError, match="a reserve of 100 %"):
        make_plan(positions={}, prices={"A": quote(1.0)}, cash=1.0, targets={"A": 1},
                  cash_reserve_percent=100)
    with pytest.raises(PlanError, match="no valid price for AAA"):
        make_plan(positions={"AAA": 1}, prices={"BBB": quote(1.0)}, cash=1.0, targets={"BBB": 1})
    with pytest.raises(PlanError, match="no valid price for AAA"):
        make_plan(positions={}, prices={"AAA": Price(11.0, 10.0, 10.5)}, cash=1.0,
                  targets={"AAA": 1})  # crossed


def test_the_plan_is_json_able() -> None:
    plan = make_plan(positions={"AAA": 3}, prices={"AAA": quote(10.0), "BBB": quote(5.0)},
                     cash=100.0, targets={"BBB": 90}, costs=FIXED)
    summary = json.loads(json.dumps(plan.to_dict()))
    assert summary["orders"][0]["action"] == "SELL"
    assert {s["symbol"] for s in summary["symbols"]} == {"AAA", "BBB"}


def test_the_plans_match_ibkrs_published_figures() -> None:
    fixed = CommissionPlan.from_config(CommissionConfig(model="fixed"))
    tiered = CommissionPlan.from_config(CommissionConfig(model="tiered", minimum=0.5))
    assert fixed.charge("BUY", 100, 50.0) == 1.0
    assert fixed.charge("BUY", 1000, 50.0) == 5.0
    assert fixed.charge("BUY", 3, 2.0) == 0.06  # capped at 1 % of the trade value
    assert fixed.charge("SELL", 1000, 50.0) == 6.56  # + SEC 1.39 + TAF 0.166
    assert tiered.charge("BUY", 10, 50.0) == 0.54  # the configured 0.50 minimum + 0.035 fees
    assert tiered.charge("BUY", 1000, 50.0) == 7.0


# -- properties ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    positions: dict[str, float]
    prices: dict[str, Price]
    cash: float
    targets: dict[str, float]
    reserve: float
    costs: Costs
    tolerance: Tolerance

    def plan(self, **changes: Any) -> Plan:
        case = replace(self, **changes)
        return make_plan(positions=case.positions, prices=case.prices, cash=case.cash,
                         targets=case.targets, cash_reserve_percent=case.reserve,
                         costs=case.costs, tolerance=case.tolerance)

    def rerun(self, plan: Plan) -> Plan:
        """Plan again on the portfolio the plan leaves if every order fills as budgeted."""
        return self.plan(positions=plan.positions_after, cash=plan.cash_after)

    @property
    def net_liquidation(self) -> float:
        return self.cash + sum(q * self.prices[s].mark for s, q in self.positions.items())


@st.composite
def commission_plans(draw: st.DrawFn) -> CommissionPlan:
    base = PLANS[draw(st.sampled_from(["fixed", "tiered"]))]
    if draw(st.booleans()):
        return base
    return replace(base, per_share=draw(st.floats(0.0, 0.01)), minimum=draw(st.floats(0.0, 5.0)),
                   maximum_percent=draw(st.floats(0.5, 2.0)),
                   fees_per_share=draw(st.floats(0.0, 0.005)))


@st.composite
def cases(draw: st.DrawFn, *, band: float | None = None, minimum: float | None = None,
          invested: bool = False) -> Case:
    """Random cases; ``invested``: targets adding up to 100 % and little cash, so that the
    commissions and the reserve decide."""
    marks = {s: draw(st.floats(1.0, 2_000.0)) for s in SYMBOLS}
    prices = {s: quote(m, draw(st.floats(0.0, 2.0))) for s, m in marks.items()}
    held = draw(st.lists(st.sampled_from(SYMBOLS), max_size=5, unique=True))
    positions = {s: float(draw(st.integers(0, 2_000))) for s in held}
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=5, unique=True))
    weights = [draw(st.one_of(st.just(0.0), st.floats(0.0, 100.0))) for _ in symbols]
    if invested:
        weights = [w + 1.0 for w in weights]
    scale = min(1.0, 100.0 / sum(weights)) if sum(weights) else 1.0
    if invested:
        scale = 100.0 / sum(weights)
    targets = {s: w * scale * 0.999999 for s, w in zip(symbols, weights, strict=True)}
    costs = Costs(draw(commission_plans()), draw(st.floats(0.0, 1.0)))
    tolerance = Tolerance(draw(st.floats(0.0, 20.0)) if band is None else band,
                          draw(st.floats(0.0, 500.0)) if minimum is None else minimum)
    cash = draw(st.floats(0.0, 20_000.0 if invested else 1_000_000.0))
    case = Case(positions, prices, cash, targets, draw(st.floats(0.0, 50.0)), costs, tolerance)
    assume(case.net_liquidation > 1.0)
    return case


def slack(cash: float, reserve: float, net_liquidation: float) -> float:
    """Cash beyond the reserve."""
    return cash - reserve / 100 * net_liquidation


def slack_before(case: Case) -> float:
    """Cash beyond the reserve once the holdings outside the targets are sold (no other trade):
    the plan may not end below it, nor below 0."""
    cash, value = case.cash, case.net_liquidation
    for symbol, held in case.positions.items():
        quantity = math.floor(held)
        if case.targets.get(symbol, 0.0) == 0 and quantity >= 1:
            price = case.prices[symbol]
            proceeds = quantity * case.costs.sell_price(price.bid) - case.costs.commission(
                "SELL", quantity, price.ask)
            cash += proceeds
            value += proceeds - quantity * price.mark
    return slack(cash, case.reserve, value)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_reserve_is_never_breached_after_commissions_and_slippage(case: Case) -> None:
    plan = case.plan()
    before = slack(case.cash, case.reserve, case.net_liquidation)
    assert plan.cash_after - plan.reserve >= min(0.0, before) - 1e-6
    assert plan.cash_after - plan.reserve >= min(0.0, slack_before(case)) - 1e-6
    spent = sum(o.value + o.commission for o in plan.buys)
    received = sum(o.value - o.commission for o in plan.sells)
    assert plan.cash_after == pytest.approx(case.cash + received - spent)
    for order in plan.orders:
        price = case.prices[order.symbol]
        expected = case.costs.buy_price(price.ask) if order.action == "BUY" else \
            case.costs.sell_price(price.bid)
        assert order.price == expected
        assert order.commission >= case.costs.commissions.charge(order.action, order.quantity,
                                                                  price.ask)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_an_immediate_rerun_places_no_order(case: Case) -> None:
    plan = case.plan()
    assert case.rerun(plan).orders == []


@settings(max_examples=400, deadline=None)
@given(cases())
def test_liquidations_always_happen_and_orders_are_sane(case: Case) -> None:
    plan = case.plan()
    sold = {o.symbol: o.quantity for o in plan.sells}
    for symbol, held in case.positions.items():
        if case.targets.get(symbol, 0.0) == 0 and held >= 1:
            assert sold.get(symbol) == math.floor(held), (symbol, plan.to_dict())
    for order in plan.orders:
        assert order.quantity >= 1
        if order.action == "SELL":
            assert order.quantity <= case.positions.get(order.symbol, 0)
        if case.targets.get(order.symbol, 0.0) > 0:
            assert order.value >= case.tolerance.min_order_value
    actions = [o.action for o in plan.orders]
    assert actions == sorted(actions, key=lambda a: a == "BUY")  # sells first


@settings(max_examples=400, deadline=None)
@given(cases(band=0.0, minimum=0.0))
def test_when_cash_allows_every_symbol_ends_within_one_share_of_its_target(case: Case) -> None:
    plan = case.plan()
    assume(not plan.cash_limited)
    for line in plan.lines:
        if line.target_weight > 0:
            assert abs(line.planned - line.target_shares) < 1, line
            if line.order is not None:
                assert abs(line.planned - line.target_shares) <= 0.5 + 1e-9, line
        else:
            assert line.planned < 1


# About a third of these cases are cash-limited (measured: 191 of 600), the others are skipped;
# Hypothesis's first, simplest draws are rarely limited, which sometimes tripped its
# filter_too_much check (9 kept of 59): the check is off, the 400 kept examples stay.
@settings(max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(cases(invested=True))
def test_when_cash_is_short_no_further_share_fits(case: Case) -> None:
    plan = case.plan()
    assume(plan.cash_limited)
    floor = min(0.0, slack_before(case))
    for line in plan.lines:
        order = line.order
        if order is None or order.action != "BUY" or line.reason is None:
            continue
        price = line.price
        extra = case.costs.buy_price(price.ask) + (
            case.costs.commission("BUY", order.quantity + 1, price.ask) - order.commission)
        value_after = plan.net_liquidation_after - extra + price.mark
        assert slack(plan.cash_after - extra, case.reserve, value_after) < floor + 1e-6, line


@settings(max_examples=150, deadline=None)
@given(cases(band=0.0, minimum=0.0), st.integers(1, 40))
def test_from_cash_the_plan_is_within_one_share_of_the_best_whole_share_portfolio(
        case: Case, size: int) -> None:
    """Two symbols bought from cash, against every whole-share portfolio that keeps the reserve."""
    symbols = sorted(case.targets)[:2]
    targets = {s: case.targets[s] for s in symbols}
    assume(sum(targets.values()) > 0)
    prices = {s: case.prices[s] for s in symbols}
    cash = size * max(p.ask for p in prices.values())
    plan = case.plan(positions={}, prices=prices, targets=targets, cash=cash)
    ideal = {line.symbol: line.target_shares for line in plan.lines}
    best, best_distance = None, math.inf
    for quantities in itertools.product(*(range(0, math.ceil(ideal[s]) + 2) for s in symbols)):
        spent = sum(q * case.costs.buy_price(prices[s].ask)
                    + case.costs.commission("BUY", q, prices[s].ask)
                    for s, q in zip(symbols, quantities, strict=True))
        held = sum(q * prices[s].mark for s, q in zip(symbols, quantities, strict=True))
        if slack(cash - spent, case.reserve, cash - spent + held) < 0:
            continue
        distance = sum((q * prices[s].mark - ideal[s] * prices[s].mark) ** 2
                       for s, q in zip(symbols, quantities, strict=True))
        if distance < best_distance:
            best, best_distance = quantities, distance
    assert best is not None
    for symbol, optimum in zip(symbols, best, strict=True):
        planned = plan.positions_after.get(symbol, 0.0)
        assert abs(planned - optimum) <= 1, (symbol, planned, optimum, plan.to_dict())


def test_the_readmes_worked_example() -> None:
    """README.md, "How a rebalance computes its orders": the numbers printed there."""
    prices = {"SPY": Price(509.98, 510.02, 510.0), "AGG": Price(98.49, 98.51, 98.5),
              "VTI": Price(250.45, 250.55, 250.5)}
    case: dict[str, Any] = {
            "positions": {"SPY": 107, "AGG": 200, "VTI": 12}, "prices": prices, "cash": 20_000.0,
            "targets": {"SPY": 60, "AGG": 38}, "cash_reserve_percent": 2,
            "costs": Costs(PLANS["fixed"], 0.1)}
    plan = make_plan(**case, tolerance=Tolerance(5, 100))
    assert plan.net_liquidation == 97_276.0
    assert kinds(plan) == [("SELL", "VTI", 12), ("BUY", "AGG", 168)]
    assert [o.commission for o in plan.orders] == [1.09, 1.0]
    assert round(plan.reference_value, 2) == 97_252.07
    lines = {line.symbol: line for line in plan.lines}
    assert round(lines["AGG"].target_shares, 2) == 367.68
    assert round(lines["SPY"].target_shares, 2) == 112.13
    assert lines["SPY"].reason == "within the drift band (4.57 % of the target, band 5 %)"
    assert round(plan.cash_after, 2) == 6_434.07 and round(plan.reserve, 2) == 1_945.04
    again = make_plan(**{**case, "positions": plan.positions_after, "cash": plan.cash_after},
                      tolerance=Tolerance(5, 100))
    assert again.orders == []
    no_band = make_plan(**case, tolerance=Tolerance(0, 100))
    assert no_band.positions_after["SPY"] == 112
