"""Fault injection, observed from the client side."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import ACCT_A, done, stock, until


async def test_refused_connections(lib, connect, sim):
    await sim.admin.refuse_connections(True)
    with pytest.raises(ConnectionRefusedError):
        await connect(1)
    await sim.admin.refuse_connections(False)
    ib = await connect(2)
    assert ib.isConnected()


async def test_drop_connections_fires_disconnect(connect, sim):
    ib = await connect(1)
    disconnected = asyncio.ensure_future(asyncio.wait_for(ib.disconnectedEvent, 2))
    await sim.admin.drop_connections()
    await disconnected
    assert not ib.isConnected()
    assert (await sim.admin.state())["clients"] == []


async def test_unanswered_request_times_out(connect, sim):
    ib = await connect(1)
    await sim.admin.leave_unanswered("reqExecutions")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ib.reqExecutionsAsync(), 0.3)
    await sim.admin.leave_unanswered("reqExecutions", False)
    assert await asyncio.wait_for(ib.reqExecutionsAsync(), 1) == []


async def test_reject_next_order_with_given_code(lib, connect, sim):
    ib = await connect(1)
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, *args: errors.append((code, text))
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    await sim.admin.reject_next_order(203, "The security is not available for trading")
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 1, account=ACCT_A))
    await done(trade)
    assert trade.orderStatus.status == "Cancelled"
    assert errors == [(203, "The security is not available for trading")]
    second = ib.placeOrder(contract, lib.MarketOrder("BUY", 1, account=ACCT_A))
    await done(second)
    assert second.orderStatus.status == "Filled"


async def test_fill_delay(lib, connect, sim):
    ib = await connect(1)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    await sim.admin.set_fill_delay(0.3)
    started = time.monotonic()
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 1, account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.status == "Submitted")
    await done(trade)
    assert time.monotonic() - started >= 0.3
    assert trade.orderStatus.status == "Filled"


async def test_partial_fill_then_rest_on_price_move(lib, connect, sim):
    ib = await connect(1)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    await sim.admin.fill_partially(4)
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 10, account=ACCT_A))
    await until(ib, lambda: trade.orderStatus.filled == 4)
    assert trade.orderStatus.status == "Submitted"
    assert trade.orderStatus.remaining == 6
    await sim.admin.set_price("AAPL", ask=100.2)
    await done(trade)
    assert [f.execution.shares for f in trade.fills] == [4.0, 6.0]
    assert [f.execution.price for f in trade.fills] == [100.1, 100.2]


async def test_unsupported_requests_get_an_error_not_a_hang(lib, connect):
    ib = await connect(1)
    errors: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append((req_id, code))
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    bars = await asyncio.wait_for(
        ib.reqHistoricalDataAsync(contract, "", "1 D", "1 hour", "TRADES", True), 1)
    assert list(bars) == []
    assert errors and errors[-1][1] == 10_000
    fundamentals = await asyncio.wait_for(ib.reqFundamentalDataAsync(contract, "ReportSnapshot"), 1)
    assert not fundamentals
    assert await asyncio.wait_for(ib.reqCurrentTimeAsync(), 1)
    assert await asyncio.wait_for(ib.reqNewsProvidersAsync(), 1) == []


async def test_unknown_message_id_does_not_crash_the_session(lib, connect):
    ib = await connect(1)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    ib.client.send(999, 1, 42)
    ib.client.send("not-a-number")
    await until(ib, lambda: len(errors) == 2)
    assert errors == [10_000, 10_000]
    assert len(await ib.reqPositionsAsync()) == 2
