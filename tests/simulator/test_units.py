"""Unit tests of configuration, framing, accounting and request parsing."""

from __future__ import annotations

import asyncio

import pytest

from ibkr_simulator import ConfigError, config_from_dict, load_config
from ibkr_simulator.accounts import Account
from ibkr_simulator.commissions import CommissionPlan, plan_from_dict
from ibkr_simulator.protocol import choose_version, decode_payload, encode_message, read_handshake

from .conftest import ROOT_CONFIG_DEMO, sim_config


def test_demo_file_loads():
    config = load_config(ROOT_CONFIG_DEMO)
    assert [a.account_id for a in config.accounts] == ["DU1234567", "DU7654321"]
    assert {i.symbol for i in config.instruments} >= {"AAPL", "SPY"}


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(accounts=[]),
        lambda c: c["accounts"][0].update(id=c["accounts"][1]["id"]),
        lambda c: c["accounts"][0]["positions"].append({"symbol": "XYZ", "quantity": 1}),
        lambda c: c.update(server_version=150),
        lambda c: c["accounts"][0].pop("id"),
        lambda c: c["accounts"][0].update(base_currency="EUR"),  # no exchange rate for EUR
        lambda c: c.update(commissions={"model": "per-trade"}),
        lambda c: c.update(commissions={"model": "fixed", "per_shares": 0.01}),
    ],
)
def test_invalid_configs_are_refused(change):
    raw = sim_config()
    change(raw)
    with pytest.raises(ConfigError):
        config_from_dict(raw)


def test_commission_minimum_and_cap():
    plan = CommissionPlan(per_share=0.005, minimum=1.0)  # the older configuration keys
    assert plan.charge("BUY", 10, 100.0) == 1.0
    assert plan.charge("BUY", 1000, 100.0) == 5.0
    assert plan.charge("SELL", 1, 5.0) == 0.05  # capped at 1% of trade value


def test_ibkr_fixed_and_tiered_plans_charge_minimums_caps_and_sale_fees():
    fixed, tiered = plan_from_dict({"model": "fixed"}), plan_from_dict({"model": "tiered"})
    assert fixed.charge("BUY", 100, 50.0) == 1.0  # 0.50 per share -> the 1.00 minimum
    assert fixed.charge("BUY", 1000, 50.0) == 5.0
    assert fixed.charge("BUY", 3, 2.0) == 0.06  # 1 % of a 6.00 trade
    # a sale adds the SEC fee (0.0000278 x 50,000 = 1.39) and the TAF (0.000166 x 1000 = 0.166)
    assert fixed.charge("SELL", 1000, 50.0) == 6.56  # 5 + 1.39 + 0.166, up to the cent
    assert tiered.charge("BUY", 10, 50.0) == 0.39  # 0.35 minimum + 10 x 0.0035 fees
    assert tiered.charge("BUY", 1000, 50.0) == 7.0  # 3.50 commission + 3.50 fees
    assert plan_from_dict({"model": "tiered", "minimum": 0.5}).minimum == 0.5


def test_fills_update_cash_average_cost_and_realized_pnl():
    account = Account("A", 1_000.0)
    account.apply_fill("X", 10, 10.0, 1.0)
    assert account.cash == 899.0
    assert account.holdings["X"].avg_cost == pytest.approx(10.1)
    result = account.apply_fill("X", -4, 12.0, 1.0)
    assert result.realized_pnl == pytest.approx(4 * (12.0 - 10.1) - 1.0)
    assert account.cash == pytest.approx(899.0 + 48.0 - 1.0)
    account.apply_fill("X", -6, 9.0, 1.0)
    assert "X" not in account.holdings


def test_framing_round_trip():
    frame = encode_message([15, 1, "A,B", True, None, 1.5])
    assert frame[:4] == (len(frame) - 4).to_bytes(4, "big")
    assert decode_payload(frame[4:]) == ["15", "1", "A,B", "1", "", "1.5"]


async def test_handshake_parsing():
    reader = asyncio.StreamReader()
    greeting = b"v157..176 +PACEAPI"
    reader.feed_data(b"API\0" + len(greeting).to_bytes(4, "big") + greeting)
    assert await asyncio.wait_for(read_handshake(reader), 1) == (157, 176)
    assert choose_version(157, 176, 178) == 176
    assert choose_version(157, 178, 157) == 157
    assert choose_version(170, 178, 157) is None
