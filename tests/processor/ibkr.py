"""Helpers for processor tests against the in-process IBKR simulator (real TCP, real clients)."""

from __future__ import annotations

import asyncio
import copy
import importlib
from typing import Any

from event_processor.config import IBKRConfig, RetryConfig

ACCT = "DU1234567"
OTHER = "DU7654321"
LIBRARIES = ["ib_async", "ib_insync"]

SIM_CONFIG: dict[str, Any] = {
    "commission_per_share": 0.005,
    "min_commission": 1.0,
    "prices": {
        "AAPL": {"bid": 189.95, "ask": 190.05, "last": 190.00, "close": 188.50, "con_id": 265598},
        "MSFT": {"bid": 414.90, "ask": 415.10, "last": 415.00, "close": 412.00, "con_id": 272093},
        "SPY": {"bid": 509.98, "ask": 510.02, "last": 510.00, "close": 507.50, "con_id": 756733,
                "primary_exchange": "ARCA", "stock_type": "ETF"},
        "AGG": {"bid": 98.49, "ask": 98.51, "last": 98.50, "close": 98.40, "con_id": 34058013,
                "primary_exchange": "ARCA", "stock_type": "ETF"},
        "VTI": {"bid": 250.45, "ask": 250.55, "last": 250.50, "close": 249.00, "con_id": 12340001,
                "primary_exchange": "ARCA", "stock_type": "ETF"},
    },
    "accounts": [
        {"id": ACCT, "cash": 100_000.0,
         "positions": [{"symbol": "SPY", "quantity": 100, "avg_cost": 450.0},
                       {"symbol": "AGG", "quantity": 200, "avg_cost": 100.0}]},
        {"id": OTHER, "cash": 25_000.0,
         "positions": [{"symbol": "AAPL", "quantity": 50, "avg_cost": 150.0}]},
    ],
}


def sim_config() -> dict[str, Any]:
    """A fresh copy of the demo-like simulator state."""
    return copy.deepcopy(SIM_CONFIG)


def ibkr_config(port: int, library: str = "ib_async", **overrides: Any) -> IBKRConfig:
    """Adapter settings with short timeouts and tiny retry delays."""
    values: dict[str, Any] = {
        "library": library, "host": "127.0.0.1", "port": port, "client_id": 11,
        "connect_timeout": 2, "request_timeout": 2, "order_timeout": 3,
        "connection_retry": RetryConfig(max_retries=2, delay=0.05),
        "order_retry": RetryConfig(max_retries=1, delay=0.05),
    }
    return IBKRConfig(**{**values, **overrides})


async def place_resting_limits(port: int, library: str, client_id: int,
                               orders: list[tuple[str, str, float]]) -> None:
    """Place resting BUY limit orders (account, symbol, limit) as ``client_id``, then disconnect.

    This is what a processor that crashed mid-rebalance leaves behind.
    """
    lib = importlib.import_module(library)
    ib = lib.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=2)
    try:
        trades = []
        for account, symbol, limit in orders:
            contract = lib.Stock(symbol, "SMART", "USD")
            await ib.qualifyContractsAsync(contract)
            order = lib.LimitOrder("BUY", 1, limit, account=account, orderRef="left-over")
            trades.append(ib.placeOrder(contract, order))

        async def submitted() -> None:
            while any(t.orderStatus.status != "Submitted" for t in trades):
                await ib.updateEvent

        await asyncio.wait_for(submitted(), 2)
    finally:
        ib.disconnect()
        await asyncio.sleep(0)


def working_orders(state: dict[str, Any], account: str) -> list[dict[str, Any]]:
    """The simulator's still-working orders of an account."""
    return [o for o in state["orders"]
            if o["account"] == account and o["status"] in ("Submitted", "PreSubmitted")]
