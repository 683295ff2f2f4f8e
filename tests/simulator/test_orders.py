"""Order lifecycle: fills, resting orders, cancels, MOC auction, whatIf, rejections, queries."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest

from ibkr_simulator import start_simulator

from .conftest import ACCT_A, ACCT_B, done, sim_config, stock, until


async def _qualified(ib: Any, lib: ModuleType, symbol: str = "AAPL") -> Any:
    contract = stock(lib, symbol)
    await ib.qualifyContractsAsync(contract)
    return contract


def _statuses(trade: Any) -> list[str]:
    seen: list[str] = []
    for entry in trade.log:
        if not seen or seen[-1] != entry.status:
            seen.append(entry.status)
    return seen


async def test_market_buy_fills_at_ask_and_updates_account(lib, connect, sim):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 10, account=ACCT_A, orderRef="rb-1"))
    await done(trade)
    assert _statuses(trade) == ["PendingSubmit", "Submitted", "Filled"]
    [fill] = trade.fills
    assert (fill.execution.price, fill.execution.shares, fill.execution.side) == (100.1, 10, "BOT")
    assert fill.execution.orderRef == "rb-1"
    await until(ib, lambda: fill.commissionReport.commission == 1.0)
    await until(ib, lambda: any(p.contract.symbol == "AAPL" for p in ib.positions(ACCT_A)))
    [aapl] = [p for p in ib.positions(ACCT_A) if p.contract.symbol == "AAPL"]
    assert aapl.position == 10
    assert aapl.avgCost == pytest.approx(100.2)  # price plus commission per share
    state = await sim.admin.state()
    assert state["accounts"][ACCT_A]["cash"] == pytest.approx(10_000 - 1_001 - 1)


async def test_market_sell_fills_at_bid_with_realized_pnl(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.MarketOrder("SELL", 5, account=ACCT_B))
    await done(trade)
    [fill] = trade.fills
    assert fill.execution.price == 99.9
    await until(ib, lambda: fill.commissionReport.commission > 0)
    assert fill.commissionReport.realizedPNL == pytest.approx(5 * (99.9 - 90.0) - 1.0)
    await until(ib, lambda: [p.position for p in ib.positions(ACCT_B)] == [15.0])


async def test_marketable_limit_fills_at_the_ask(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 101.0, account=ACCT_A))
    await done(trade)
    assert trade.orderStatus.status == "Filled"
    assert trade.orderStatus.avgFillPrice == 100.1


async def test_resting_limit_fills_when_price_moves(lib, connect, sim):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 95.0, account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.status == "Submitted")
    await sim.admin.set_price("AAPL", bid=96.0, ask=96.5)
    assert not trade.isDone()
    await sim.admin.set_price("AAPL", bid=94.8, ask=94.9)
    await done(trade)
    assert trade.orderStatus.avgFillPrice == 94.9


async def test_modify_resting_limit_to_marketable(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    order = lib.LimitOrder("BUY", 5, 95.0, account=ACCT_A)
    trade = ib.placeOrder(contract, order)
    await until(ib, lambda: trade.orderStatus.status == "Submitted")
    order.lmtPrice = 100.5
    ib.placeOrder(contract, order)
    await done(trade)
    assert trade.orderStatus.status == "Filled"


async def test_cancel_order_gives_cancelled_and_202(lib, connect):
    ib = await connect(1)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 90.0, account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    await done(trade)
    assert trade.orderStatus.status == "Cancelled"
    await until(ib, lambda: 202 in errors)


async def test_global_cancel_cancels_every_open_order(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trades = [ib.placeOrder(contract, lib.LimitOrder("BUY", 1, 90.0 + i, account=ACCT_A))
              for i in range(3)]
    await until(ib, lambda: all(t.orderStatus.status == "Submitted" for t in trades))
    ib.reqGlobalCancel()
    for trade in trades:
        await done(trade)
    assert {t.orderStatus.status for t in trades} == {"Cancelled"}


async def test_moc_fills_only_in_the_close_auction(lib, connect, sim):
    ib = await connect(1)
    contract = await _qualified(ib, lib, "SPY")
    trade = ib.placeOrder(contract, lib.Order(action="SELL", totalQuantity=4, orderType="MOC",
                                              account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.status == "PreSubmitted")
    await sim.admin.set_price("SPY", bid=501.0, ask=501.2)
    assert not trade.isDone()
    assert await sim.admin.run_close_auction({"SPY": 502.5}) == 1
    await done(trade)
    assert trade.orderStatus.avgFillPrice == 502.5
    assert (await sim.admin.state())["prices"]["SPY"]["close"] == 502.5


async def test_what_if_returns_margin_figures(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    state = await ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 10, account=ACCT_A))
    assert float(state.initMarginBefore) == 5_000.0
    assert float(state.initMarginChange) == pytest.approx(1_001.0)
    assert float(state.initMarginAfter) == pytest.approx(6_001.0)
    assert float(state.equityWithLoanChange) == -1.0
    assert state.commission == 1.0
    assert ib.openTrades() == []


async def test_buy_beyond_available_cash_is_rejected_with_201(lib, connect, sim):
    ib = await connect(1)
    errors: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append((req_id, code))
    contract = await _qualified(ib, lib, "SPY")
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 30, account=ACCT_A))  # 15,003 > 10,000
    await done(trade)
    assert trade.orderStatus.status == "Cancelled"
    assert errors == [(trade.order.orderId, 201)]
    assert (await sim.admin.state())["accounts"][ACCT_A]["cash"] == 10_000.0


async def test_open_orders_per_client_and_all(lib, connect):
    first = await connect(1)
    second = await connect(2)
    contract = await _qualified(first, lib)
    trade = first.placeOrder(contract, lib.LimitOrder("BUY", 2, 90.0, account=ACCT_A,
                                                      orderRef="keep"))
    await until(first, lambda: trade.orderStatus.status == "Submitted")
    own = await second.reqOpenOrdersAsync()
    assert own == []
    every = await second.reqAllOpenOrdersAsync()
    assert [(t.order.orderId, t.order.clientId, t.order.orderRef) for t in every] == [
        (trade.order.orderId, 1, "keep")]
    mine = await first.reqOpenOrdersAsync()
    assert [t.order.permId for t in mine] == [trade.order.permId]


async def test_reconnect_restores_open_orders(lib, connect):
    ib = await connect(4)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 2, 90.0, account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.status == "Submitted")
    ib.disconnect()
    again = await connect(4)
    [restored] = again.openTrades()
    assert restored.order.orderId == trade.order.orderId
    assert restored.orderStatus.status == "Submitted"


async def test_completed_orders_and_executions_carry_order_ref(lib, connect):
    ib = await connect(1)
    contract = await _qualified(ib, lib)
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 3, account=ACCT_A, orderRef="cr-9"))
    await done(trade)
    completed = await ib.reqCompletedOrdersAsync(False)
    assert [(t.order.orderRef, t.orderStatus.status) for t in completed] == [("cr-9", "Filled")]
    fills = await ib.reqExecutionsAsync()
    assert [(f.execution.orderRef, f.execution.shares) for f in fills] == [("cr-9", 3.0)]
    other = await connect(2)
    assert [f.execution.permId for f in other.fills()] == [trade.order.permId]


@pytest.mark.parametrize(("plan", "buy", "sell"), [
    ({"model": "fixed"}, 1.0, 1.03),   # the 1.00 minimum; a sale adds SEC fee 0.0278, TAF 0.0017
    ({"model": "tiered"}, 0.39, 0.42),  # 0.35 minimum + 10 x 0.0035 fees; the sale: + 0.0295
])
async def test_fills_are_charged_by_the_configured_ibkr_plan(lib, plan, buy, sell):
    raw = sim_config()
    raw["commissions"] = plan
    async with start_simulator(raw, port=0) as sim:
        ib = lib.IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=2)
        try:
            contract = await _qualified(ib, lib)
            bought = ib.placeOrder(contract, lib.MarketOrder("BUY", 10, account=ACCT_A))
            await done(bought)
            sold = ib.placeOrder(contract, lib.MarketOrder("SELL", 10, account=ACCT_A))
            await done(sold)
            await until(ib, lambda: bool(sold.fills) and sold.fills[0].commissionReport.commission > 0)
            assert bought.fills[0].commissionReport.commission == buy
            assert sold.fills[0].commissionReport.commission == sell
            state = await sim.admin.state()
            assert state["accounts"][ACCT_A]["cash"] == pytest.approx(
                10_000 - 10 * 100.1 - buy + 10 * 99.9 - sell)
        finally:
            ib.disconnect()
            await asyncio.sleep(0)
