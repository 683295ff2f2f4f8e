"""The rebalance section of the processor's configuration: commission plans, quote and currency
policy, tolerance, and the strategies, checked like the targets of an event."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from event_processor.config import DEFAULT_CONFIG_PATH, ConfigError, load_settings
from event_processor.rebalancing.costs import PLANS, CommissionPlan


def error_for(tmp_path: Path, data: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_the_shipped_config_budgets_ibkrs_fixed_plan_and_trades_on_live_quotes_only() -> None:
    rebalance = load_settings(DEFAULT_CONFIG_PATH).rebalance
    assert CommissionPlan.from_config(rebalance.commissions) == PLANS["fixed"]
    assert (rebalance.allow_delayed_quotes, rebalance.allow_other_currencies) == (False, False)
    assert rebalance.max_spread_percent == 1.0
    assert (rebalance.drift_band_percent, rebalance.min_order_value) == (5.0, 100.0)


def test_a_plan_figure_can_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"rebalance": {"commissions": {"model": "tiered",
                                                                  "per_share": 0.002}}}))
    plan = CommissionPlan.from_config(load_settings(path).rebalance.commissions)
    assert (plan.model, plan.per_share, plan.minimum) == ("tiered", 0.002, 0.35)


@pytest.mark.parametrize(("rebalance", "message"), [
    ({"buy_cost_buffer_percent": 0.2}, "replaced by commissions"),
    ({"commissions": {"model": "per-trade"}}, "rebalance.commissions.model"),
    ({"commissions": {"model": "fixed", "per_shares": 0.01}}, "rebalance.commissions.per_shares"),
    ({"max_spread_percent": 0}, "rebalance.max_spread_percent"),
    ({"slippage_percent": -1}, "rebalance.slippage_percent"),
    ({"drift_band_percent": 101}, "rebalance.drift_band_percent"),
])
def test_bad_rebalance_settings_name_the_key(tmp_path: Path, rebalance: dict[str, object],
                                             message: str) -> None:
    assert message in error_for(tmp_path, {"rebalance": rebalance})


@pytest.mark.parametrize(("allocations", "message"), [
    ([], "strategy 'empty': allocations is empty"),
    ([{"symbol": "SPY", "allocation": 70}, {"symbol": "AGG", "allocation": 40}],
     "strategy 'empty': allocations add up to more than 100 percent"),
    ([{"symbol": "SPY", "allocation": 10}, {"symbol": "SPY", "allocation": 10}],
     "strategy 'empty': symbols listed twice: SPY"),
])
def test_a_strategy_no_portfolio_can_meet_is_refused_like_an_event(
        tmp_path: Path, allocations: list[object], message: str) -> None:
    assert message in error_for(tmp_path, {"strategies": {"empty": allocations}})
