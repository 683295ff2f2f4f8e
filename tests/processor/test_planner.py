"""The order planner: examples and hypothesis properties (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_processor.rebalancing.planner import Plan, PlanError, make_plan

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]


def replan(plan: Plan, targets: dict[str, float], reserve: float, **kw: float) -> Plan:
    """Plan again on the portfolio the first plan leaves when every order fills at its price."""
    return make_plan(positions=plan.positions_after, prices=plan.prices, cash=plan.cash_after,
                     targets=targets, cash_reserve_percent=reserve, **kw)


def test_demo_account_to_balanced() -> None:
    plan = make_plan(positions={"SPY": 100, "AGG": 200}, prices={"SPY": 510.0, "AGG": 98.5},
                     cash=100_000.0, targets={"SPY": 60, "AGG": 38}, cash_reserve_percent=2)
    assert plan.net_liquidation == pytest.approx(100_000 + 51_000 + 19_700)
    assert [(o.action, o.symbol, o.quantity) for o in plan.orders] == [
        ("BUY", "AGG", 445), ("BUY", "SPY", 96)]
    assert plan.cash_after >= plan.reserve
    assert plan.weights_after["SPY"] == pytest.approx(60 * 0.98, abs=510 / plan.net_liquidation * 100)
    assert replan(plan, {"SPY": 60, "AGG": 38}, 2).orders == ()


def test_sells_come_first_and_untargeted_holdings_are_sold() -> None:
    plan = make_plan(positions={"AAA": 10, "ZZZ": 5}, prices={"AAA": 100.0, "ZZZ": 50.0, "BBB": 20.0},
                     cash=0.0, targets={"BBB": 100})
    assert [(o.action, o.symbol, o.quantity) for o in plan.orders] == [
        ("SELL", "AAA", 10), ("SELL", "ZZZ", 5), ("BUY", "BBB", 62)]


def test_buys_are_scaled_down_to_the_cash_after_sells_minus_reserve() -> None:
    plan = make_plan(positions={}, prices={"AAA": 100.0, "BBB": 100.0}, cash=10_000.0,
                     targets={"AAA": 50, "BBB": 50}, buy_cost_buffer_percent=1)
    assert plan.scaled
    assert sum(o.value for o in plan.buys) * 1.01 <= 10_000.0
    assert [o.quantity for o in plan.buys] == [50, 49]  # 99 x 101 = 9,999


def test_small_orders_are_skipped() -> None:
    plan = make_plan(positions={"AAA": 10}, prices={"AAA": 10.0}, cash=30.0, targets={"AAA": 100},
                     min_order_value=50)
    assert plan.orders == ()
    assert [(s.symbol, s.quantity) for s in plan.skipped] == [("AAA", 3)]


@pytest.mark.parametrize("prices", [{"AAA": 0.0}, {"AAA": float("nan")}, {}])
def test_missing_or_bad_prices_are_refused(prices: dict[str, float]) -> None:
    with pytest.raises(PlanError, match="AAA"):
        make_plan(positions={"AAA": 1}, prices=prices, cash=100.0, targets={})


def test_plan_is_json_able() -> None:
    import json

    plan = make_plan(positions={"AAA": 3}, prices={"AAA": 10.0, "BBB": 5.0}, cash=100.0,
                     targets={"BBB": 90})
    assert json.loads(json.dumps(plan.to_dict()))["orders"][0]["action"] == "SELL"


@st.composite
def portfolios(draw: st.DrawFn) -> dict[str, Any]:
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=5, unique=True))
    prices = {s: draw(st.floats(1.0, 2_000.0)) for s in SYMBOLS}
    positions = {s: float(draw(st.integers(0, 2_000))) for s in
                 draw(st.lists(st.sampled_from(SYMBOLS), max_size=5, unique=True))}
    weights = [draw(st.floats(0.0, 100.0)) for _ in symbols]
    scale = min(1.0, 100.0 / sum(weights)) if sum(weights) else 1.0
    targets = {s: w * scale * 0.999999 for s, w in zip(symbols, weights, strict=True)}
    cash = draw(st.floats(0.0, 1_000_000.0))
    reserve = draw(st.floats(0.0, 50.0))
    return {"positions": positions, "prices": prices, "cash": cash, "targets": targets,
            "cash_reserve_percent": reserve}


def _plan(case: dict[str, Any], **kw: Any) -> Plan | None:
    try:
        return make_plan(**case, **kw)
    except PlanError:
        return None  # nothing to invest (net liquidation 0)


@settings(max_examples=300, deadline=None)
@given(portfolios(), st.floats(0.0, 2.0), st.floats(0.0, 500.0))
def test_a_plan_never_spends_more_than_the_cash_it_has(case: dict[str, Any], buffer: float,
                                                       minimum: float) -> None:
    plan = _plan(case, buy_cost_buffer_percent=buffer, min_order_value=minimum)
    if plan is None:
        return
    proceeds = sum(o.value for o in plan.sells)
    spent = sum(o.value for o in plan.buys) * (1 + buffer / 100)
    budget = case["cash"] + proceeds - plan.reserve
    assert spent <= max(budget, 0.0) + 1e-6
    for o in plan.sells:
        assert o.quantity <= case["positions"].get(o.symbol, 0)
    assert all(o.quantity >= 1 and o.value >= minimum for o in plan.orders)
    actions = [o.action for o in plan.orders]
    assert actions == sorted(actions, key=lambda a: a == "BUY")  # sells first


@settings(max_examples=300, deadline=None)
@given(portfolios(), st.floats(0.0, 500.0))
def test_running_the_plan_twice_converges_instead_of_doubling(case: dict[str, Any], minimum: float) -> None:
    first = _plan(case, min_order_value=minimum)
    if first is None:
        return
    second = replan(first, case["targets"], case["cash_reserve_percent"], min_order_value=minimum)
    assert second.sells == []
    cheapest = min(first.prices[o.symbol] for o in first.buys) if first.buys else 0
    if not first.scaled:
        assert second.orders == ()
    else:  # only what the rounding of the scaled buys left: less than one share per buy
        assert sum(o.value for o in second.buys) <= len(first.buys) * max(first.prices.values())
        assert second.cash_after >= second.reserve - 1e-6 or cheapest == 0


@settings(max_examples=300, deadline=None)
@given(portfolios())
def test_weights_reach_the_targets_within_one_share(case: dict[str, Any]) -> None:
    plan = _plan(case)
    if plan is None or plan.scaled:
        return
    net = plan.net_liquidation
    investable_share = (100 - case["cash_reserve_percent"]) / 100
    for symbol, weight in plan.target_weights.items():
        wanted = weight * investable_share
        one_share = plan.prices[symbol] / net * 100
        assert abs(plan.weights_after.get(symbol, 0.0) - wanted) < one_share + 1e-6
