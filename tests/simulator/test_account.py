"""Account summary, account values and positions consistent with cash and prices."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from ibkr_simulator import start_simulator

from .conftest import ACCT_A, ACCT_B, done, sim_config, stock, until


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


async def _summary_rows(ib: Any, tags: str) -> list[Any]:
    req_id = ib.client.getReqId()
    future = ib.wrapper.startReq(req_id)
    ib.client.reqAccountSummary(req_id, "All", tags)
    await asyncio.wait_for(future, 2)
    ib.client.cancelAccountSummary(req_id)
    return list(ib.wrapper.acctSummary.values())


async def test_an_account_in_another_base_currency_reports_in_it_and_trades_usd_cash_only(lib):
    raw = sim_config()
    raw["fx_rates"] = {"EUR": 1.25}  # USD per EUR
    raw["accounts"][1].update(base_currency="EUR", cash_balances={"EUR": 2_000.0})
    async with start_simulator(raw, port=0) as sim:
        ib = lib.IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=2)
        try:
            rows = [r for r in await _summary_rows(ib, "NetLiquidation,TotalCashValue,$LEDGER:ALL")
                    if r.account == ACCT_B]
            values = {(r.tag, r.currency): float(r.value) for r in rows}
            # 5,000 USD + 20 AAPL at 100 USD + 2,000 EUR (2,500 USD) = 9,500 USD = 7,600 EUR
            assert values[("NetLiquidation", "EUR")] == 7_600.0
            assert values[("TotalCashValue", "EUR")] == 6_000.0
            assert values[("CashBalance", "USD")] == 5_000.0
            assert values[("CashBalance", "EUR")] == 2_000.0
            assert values[("CashBalance", "BASE")] == 6_000.0
            assert values[("ExchangeRate", "USD")] == 0.8
            assert not any(r.currency == "USD" and r.tag == "NetLiquidation" for r in rows)

            contract = stock(lib, "AAPL")
            await ib.qualifyContractsAsync(contract)
            # 60 x 100.1 needs 6,006 USD: more than the USD cash, though the EUR would cover it
            trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 60, account=ACCT_B))
            await done(trade)
            assert trade.orderStatus.status == "Cancelled"
            assert "Insufficient funds" in trade.log[-1].message
        finally:
            ib.disconnect()
            await asyncio.sleep(0)
