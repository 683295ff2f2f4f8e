"""Handshake, start-up synchronisation, several clients and the server version setting."""

from __future__ import annotations

import asyncio

import pytest

from ibkr_simulator import start_simulator

from .conftest import ACCT_A, ACCT_B, sim_config


async def test_connect_syncs_accounts_and_positions(connect):
    ib = await connect(1)
    assert ib.isConnected()
    assert ib.client.serverVersion() == 157
    assert ib.managedAccounts() == [ACCT_A, ACCT_B]
    held = {(p.account, p.contract.symbol): (p.position, p.avgCost) for p in ib.positions()}
    assert held == {(ACCT_A, "SPY"): (10.0, 400.0), (ACCT_B, "AAPL"): (20.0, 90.0)}
    # reqAccountUpdatesMulti for every managed account is part of the start-up
    net_liq = {v.account: float(v.value) for v in ib.accountValues() if v.tag == "NetLiquidation"}
    assert net_liq == {ACCT_A: 10_000.0 + 10 * 500.0, ACCT_B: 5_000.0 + 20 * 100.0}


async def test_connect_with_account_loads_portfolio_at_market_price(connect):
    ib = await connect(1, account=ACCT_A)
    [item] = ib.portfolio()
    assert item.contract.symbol == "SPY"
    assert item.marketPrice == 500.0
    assert item.marketValue == 5_000.0
    assert item.unrealizedPNL == pytest.approx(1_000.0)
    values = {v.tag: v.value for v in ib.accountValues(ACCT_A) if v.currency == "USD"}
    assert float(values["TotalCashValue"]) == 10_000.0
    assert float(values["GrossPositionValue"]) == 5_000.0


async def test_several_clients_at_once(connect):
    first, second = await asyncio.gather(connect(1), connect(2))
    assert first.isConnected() and second.isConnected()
    assert len(first.positions()) == len(second.positions()) == 2


async def test_duplicate_client_id_is_refused_with_326(lib, connect, sim):
    await connect(7)
    ib = lib.IB()
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    with pytest.raises((asyncio.TimeoutError, ConnectionError)):
        await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=0.5)
    ib.disconnect()
    assert errors == [326]
    assert (await sim.admin.state())["clients"] == [7]


@pytest.mark.parametrize(("offered", "expected"), [(176, {"ib_async": 176, "ib_insync": 176}),
                                                    (178, {"ib_async": 178, "ib_insync": 176})])
async def test_server_version_is_negotiated(lib, offered, expected):
    async with start_simulator(sim_config(), server_version=offered) as sim:
        ib = lib.IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=3, timeout=2)
        try:
            assert ib.client.serverVersion() == expected[lib.__name__]
            assert len(ib.positions()) == 2
        finally:
            ib.disconnect()
