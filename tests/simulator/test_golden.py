"""Golden decode tests: every message the simulator sends decodes cleanly in both clients."""

from __future__ import annotations

import asyncio
import logging
from types import ModuleType
from typing import Any

import pytest

from ibkr_simulator import Simulator, start_simulator
from ibkr_simulator import messages as m
from ibkr_simulator.market import Instrument

from .conftest import ACCT_A, done, sim_config, stock, until

# Every message type the simulator can send.
EXPECTED_IDS = {1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 19, 49, 52, 53, 54, 55, 57, 58, 59,
                61, 62, 63, 64, 73, 74, 78, 80, 85, 93, 101, 102}
DECODE_FAILURES = ("Error handling fields", "Error for ")


async def _exercise(lib: ModuleType, ib: Any, sim: Simulator) -> None:
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    await ib.qualifyContractsAsync(stock(lib, "NOPE"))
    await ib.reqTickersAsync(contract)
    ticker = ib.reqMktData(contract)
    await ib.accountSummaryAsync()
    await ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 1, account=ACCT_A))
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 2, account=ACCT_A, orderRef="g"))
    await done(trade)
    resting = ib.placeOrder(contract, lib.LimitOrder("BUY", 1, 50.0, account=ACCT_A))
    await until(ib, lambda: resting.orderStatus.status == "Submitted")
    await sim.admin.set_price("AAPL", bid=99.0, ask=99.2)
    await until(ib, lambda: ticker.bid == 99.0)
    ib.cancelOrder(resting.order)
    await done(resting)
    await ib.reqOpenOrdersAsync()
    await ib.reqAllOpenOrdersAsync()
    await ib.reqCompletedOrdersAsync(False)
    await ib.reqExecutionsAsync()
    await ib.reqPositionsAsync()
    await ib.reqAccountUpdatesAsync(ACCT_A)
    ib.client.reqIds(1)
    await ib.reqCurrentTimeAsync()
    await ib.reqNewsProvidersAsync()
    await ib.reqMktDepthExchangesAsync()
    await ib.reqScannerParametersAsync()
    ib.client.reqFamilyCodes()
    ib.client.requestFA(1)
    await ib.reqMarketRuleAsync(26)
    await asyncio.wait_for(
        ib.reqHistoricalDataAsync(contract, "", "1 D", "1 hour", "TRADES", True), 1)
    ib.cancelMktData(contract)
    await until(ib, lambda: ib.client.isReady())


@pytest.mark.parametrize("version", [157, 163, 176, 178])
async def test_every_message_decodes_cleanly(lib, version, caplog):
    caplog.set_level(logging.DEBUG)
    seen: set[int] = set()
    async with start_simulator(sim_config(), server_version=version) as sim:
        ib = lib.IB()
        interpret = ib.client.decoder.interpret

        def recording(fields: list[str]) -> None:
            seen.add(int(fields[0]))
            interpret(fields)

        ib.client.decoder.interpret = recording
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=2)
        try:
            await _exercise(lib, ib, sim)
            await asyncio.sleep(0.05)  # let the last replies arrive
        finally:
            ib.disconnect()
    failures = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith(DECODE_FAILURES)]
    assert failures == []
    assert seen >= EXPECTED_IDS, sorted(EXPECTED_IDS - seen)


INST = Instrument("AAPL", 265598, "NASDAQ", "COMMON", "APPLE INC")
ORDER = m.OrderView(1, 1, 1000, ACCT_A, "BUY", 10.0, "LMT", 100.0, "DAY", "ref")
EXEC = m.ExecutionView("e1", "20261128 10:00:00 UTC", ACCT_A, "BOT", 1.0, 1.0, 1000, 1, 1,
                       1.0, 1.0, "ref")


@pytest.mark.parametrize(
    ("fields", "count"),
    [
        (m.handshake_reply(157, "t"), 2),
        (m.managed_accounts([ACCT_A]), 3),
        (m.next_valid_id(1), 3),
        (m.error(157, 1, 200, "x"), 5),
        (m.error(166, 1, 200, "x"), 6),
        (m.tick_price(1, 1, 1.0, 1.0), 7),
        (m.position(ACCT_A, INST, 1.0, 1.0), 16),
        (m.portfolio_value(INST, m.PortfolioRow(1, 1, 1, 1, 0, 0), ACCT_A), 20),
        (m.order_status(1, "Submitted", 0, 1, 0, 1000, 0, 1), 12),
        (m.exec_details(157, -1, INST, EXEC), 31),
        (m.exec_details(178, -1, INST, EXEC), 32),
        (m.commission_report("e1", 1.0, None), 8),
        (m.contract_details(157, 1, INST), 39),
        (m.contract_details(164, 1, INST), 40),
        (m.open_order(157, INST, ORDER, m.OrderStateView("Submitted")), 120),
        (m.completed_order(157, INST, ORDER, "Filled", "t", "Filled"), 92),
    ],
)
def test_exact_field_counts(fields, count):
    assert len(fields) == count
