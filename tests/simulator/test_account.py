"""Account summary, account values and positions consistent with cash and prices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from .conftest import ACCT_A, ACCT_B, until


def _summary(values: Iterable[Any], account: str) -> dict[str, float]:
    return {v.tag: float(v.value) for v in values if v.account == account and v.currency == "USD"}


async def test_account_summary_values_positions_at_market(connect):
    ib = await connect(1)
    values = await ib.accountSummaryAsync()
    a = _summary(values, ACCT_A)
    assert a["NetLiquidation"] == 15_000.0  # 10,000 cash + 10 SPY at 500 (not at avg cost 400)
    assert a["TotalCashValue"] == 10_000.0
    assert a["GrossPositionValue"] == 5_000.0
    assert a["AvailableFunds"] == 10_000.0
    assert a["BuyingPower"] == 10_000.0
    assert a["EquityWithLoanValue"] == 15_000.0
    assert _summary(values, ACCT_B)["NetLiquidation"] == 7_000.0


async def test_summary_and_portfolio_follow_price_and_cash_changes(connect, sim):
    ib = await connect(1, account=ACCT_A)
    await ib.accountSummaryAsync()
    await sim.admin.set_price("SPY", last=600.0)
    await sim.admin.set_cash(ACCT_A, 1_000.0)

    def summary_updated() -> bool:
        return _summary(ib.wrapper.acctSummary.values(), ACCT_A).get("NetLiquidation") == 7_000.0

    await until(ib, summary_updated)
    await until(ib, lambda: ib.portfolio()[0].marketValue == 6_000.0)
    assert ib.portfolio()[0].unrealizedPNL == pytest.approx(2_000.0)


async def test_admin_positions_stream_to_clients(connect, sim):
    ib = await connect(1)
    await sim.admin.set_position(ACCT_B, "SPY", 3, 480.0)
    await sim.admin.set_position(ACCT_B, "AAPL", 0)

    def held() -> dict[str, float]:
        return {p.contract.symbol: p.position for p in ib.positions(ACCT_B)}

    await until(ib, lambda: held() == {"SPY": 3.0})
    positions = await ib.reqPositionsAsync()
    assert {(p.account, p.contract.symbol) for p in positions} == {(ACCT_A, "SPY"), (ACCT_B, "SPY")}
