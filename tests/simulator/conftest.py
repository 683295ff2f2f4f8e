"""Fixtures: an in-process simulator and ib_async / ib_insync clients connected to it."""

from __future__ import annotations

import asyncio
import copy
import importlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ibkr_simulator import Simulator, start_simulator

LIBRARIES = ["ib_async", "ib_insync"]
ROOT_CONFIG_DEMO = Path(__file__).resolve().parents[2] / "ibkr-simulator" / "accounts.demo.yaml"
ACCT_A = "DU111111"
ACCT_B = "DU222222"

CONFIG: dict[str, Any] = {
    "commission_per_share": 0.005,
    "min_commission": 1.0,
    "prices": {
        "AAPL": {"bid": 99.9, "ask": 100.1, "last": 100.0, "close": 98.0, "con_id": 265598,
                 "primary_exchange": "NASDAQ", "long_name": "APPLE INC"},
        "SPY": {"bid": 499.9, "ask": 500.1, "last": 500.0, "close": 495.0, "con_id": 756733,
                "primary_exchange": "ARCA", "stock_type": "ETF"},
    },
    "accounts": [
        {"id": ACCT_A, "cash": 10_000.0,
         "positions": [{"symbol": "SPY", "quantity": 10, "avg_cost": 400.0}]},
        {"id": ACCT_B, "cash": 5_000.0,
         "positions": [{"symbol": "AAPL", "quantity": 20, "avg_cost": 90.0}]},
    ],
}


def sim_config() -> dict[str, Any]:
    """A fresh copy of the test configuration."""
    return copy.deepcopy(CONFIG)


@pytest.fixture(params=LIBRARIES)
def lib(request: pytest.FixtureRequest) -> ModuleType:
    """The client library under test: ib_async or ib_insync."""
    return importlib.import_module(request.param)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A running simulator on free ports (API and admin HTTP)."""
    async with start_simulator(sim_config(), port=0, admin_port=0) as simulator:
        yield simulator


Connect = Callable[..., Any]


@pytest.fixture
async def connect(lib: ModuleType, sim: Simulator) -> AsyncIterator[Connect]:
    """Factory: connect a client of the library under test; all are disconnected after."""
    clients: list[Any] = []

    async def _connect(client_id: int = 1, **kwargs: Any) -> Any:
        ib = lib.IB()
        clients.append(ib)
        kwargs.setdefault("timeout", 2)
        await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, **kwargs)
        return ib

    yield _connect
    for ib in clients:
        ib.disconnect()
    await asyncio.sleep(0)


async def until(ib: Any, condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for client updates until the condition holds (TimeoutError otherwise)."""

    async def wait() -> None:
        while not condition():
            await ib.updateEvent

    await asyncio.wait_for(wait(), timeout)


async def done(trade: Any, timeout: float = 2.0) -> None:
    """Wait until a trade is filled or cancelled."""

    async def wait() -> None:
        while not trade.isDone():
            await trade.statusEvent

    await asyncio.wait_for(wait(), timeout)


def stock(lib: ModuleType, symbol: str) -> Any:
    """A SMART-routed USD stock contract of the library."""
    return lib.Stock(symbol, "SMART", "USD")
