"""The HTTP admin layer and the command line entry point."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import ib_async
import pytest

from event_queue.redis_server import free_port

from .conftest import ACCT_A, ACCT_B, done, stock, until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def http(sim):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.admin_port}") as client:
        yield client


async def test_http_reads_and_changes_state(http):
    assert (await http.get("/health")).json() == {"ok": True}
    assert (await http.post("/prices/AAPL", json={"last": 105.0})).status_code == 200
    assert (await http.post(f"/accounts/{ACCT_A}/cash", json={"cash": 123.0})).status_code == 200
    response = await http.post(f"/accounts/{ACCT_B}/positions/SPY",
                               json={"quantity": 2, "avg_cost": 450})
    assert response.status_code == 200
    state = (await http.get("/state")).json()
    assert state["prices"]["AAPL"]["last"] == 105.0
    assert state["accounts"][ACCT_A]["cash"] == 123.0
    assert state["accounts"][ACCT_B]["positions"]["SPY"]["quantity"] == 2.0
    assert state["accounts"][ACCT_B]["values"]["NetLiquidation"] == 5_000 + 20 * 105 + 2 * 500


async def test_http_takes_live_data_away_and_sets_cash_by_currency(http, sim):
    assert (await http.post("/market-data/AAPL", json={"live": False})).status_code == 200
    assert sim.broker.market.instruments["AAPL"].live_data is False
    assert (await http.post(f"/accounts/{ACCT_A}/cash", json={"cash": 7.0})).status_code == 200
    no_rate = await http.post(f"/accounts/{ACCT_A}/cash", json={"cash": 5.0, "currency": "EUR"})
    assert no_rate.status_code == 400  # no exchange rate configured for EUR
    assert (await http.get("/state")).json()["accounts"][ACCT_A]["cash_balances"] == {}


async def test_http_errors(http):
    assert (await http.get("/nope")).status_code == 404
    assert (await http.get("/prices/AAPL")).status_code == 405
    bad = await http.post("/prices/AAPL", content=b"{not json", headers={"Content-Type": "x"})
    assert bad.status_code == 400
    assert (await http.post("/faults/unanswered", json={"request": "noSuchRequest"})).status_code == 400
    assert (await http.post("/accounts/DU000/cash", json={"cash": 1})).status_code == 400


async def test_http_faults_and_auction_reach_clients(lib, connect, http):
    ib = await connect(1)
    contract = stock(lib, "SPY")
    await ib.qualifyContractsAsync(contract)
    await http.post("/faults/reject-next-order", json={"code": 201, "text": "nope"})
    rejected = ib.placeOrder(contract, lib.MarketOrder("BUY", 1, account=ACCT_A))
    await done(rejected)
    assert rejected.orderStatus.status == "Cancelled"
    moc = ib.placeOrder(contract, lib.Order(action="BUY", totalQuantity=1, orderType="MOC",
                                            account=ACCT_A))
    await until(ib, lambda: moc.orderStatus.status == "PreSubmitted")
    assert (await http.post("/auction/close", json={})).json() == {"fills": 1}
    await done(moc)
    assert moc.orderStatus.avgFillPrice == 500.0
    state = (await http.get("/state")).json()
    assert [o["status"] for o in state["orders"]] == ["Cancelled", "Filled"]
    assert [e["order_ref"] for e in state["executions"]] == [""]
    await http.post("/faults/drop-connections")
    await until(ib, lambda: not ib.isConnected())
    assert (await http.post("/faults/clear")).json() == {"ok": True}


async def test_cli_serves_api_and_admin():
    port, admin_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibkr_simulator", "--port", str(port), "--admin-port",
         str(admin_port), "--accounts", str(ROOT / "ibkr-simulator" / "accounts.demo.yaml")],
        cwd=ROOT / "ibkr-simulator", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as http:
            for _ in range(100):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", port, clientId=1, timeout=2)
        assert ib.managedAccounts() == ["DU1234567", "DU7654321"]
        ib.disconnect()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0, stderr.decode()
