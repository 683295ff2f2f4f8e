"""Control operations for tests and demos, as plain async methods.

The HTTP admin interface calls exactly these methods.
"""

from __future__ import annotations

from typing import Any

from .faults import OrderRejection, request_id_for
from .messages import ERR_REJECTED
from .server import TwsServer
from .state import Broker

DEFAULT_REJECT_TEXT = "Order rejected - reason:Rejected by simulator fault injection"


class Admin:
    """Change prices, cash and positions, inject faults, run the close auction, read state."""

    def __init__(self, broker: Broker, server: TwsServer) -> None:
        self._broker = broker
        self._server = server

    # ------------------------------------------------------------ market and accounts

    async def set_price(self, symbol: str, bid: float | None = None, ask: float | None = None,
                        last: float | None = None, close: float | None = None) -> None:
        """Change some prices of a symbol; resting orders are re-checked and may fill."""
        self._broker.set_price(symbol, bid=bid, ask=ask, last=last, close=close)

    async def set_cash(self, account: str, cash: float, currency: str = "USD") -> None:
        """Overwrite an account's cash balance in one currency (USD, the trading currency, by
        default; another needs an exchange rate in the configuration's ``fx_rates``)."""
        self._broker.set_cash(account, cash, currency.upper())

    async def set_market_data(self, symbol: str, live: bool) -> None:
        """Give (True) or take away (False) live market data for a symbol: without it, live
        requests get error 354 and delayed requests get delayed data."""
        self._broker.set_live_data(symbol, live)

    async def set_position(self, account: str, symbol: str, quantity: float,
                           avg_cost: float = 0.0) -> None:
        """Overwrite a position; quantity 0 removes it."""
        self._broker.set_position(account, symbol, quantity, avg_cost)

    async def run_close_auction(self, prices: dict[str, float] | None = None) -> int:
        """Fill all MOC orders at the given closing prices (default: last); returns fills."""
        return len(self._broker.run_close_auction(prices))

    # ------------------------------------------------------------ faults

    async def refuse_connections(self, refuse: bool = True) -> None:
        """Close (True) or reopen (False) the API port; existing sessions are untouched."""
        self._broker.faults.refuse_connections = refuse
        if refuse:
            self._server.stop_listening()
        else:
            await self._server.start()

    async def drop_connections(self) -> None:
        """Abort every client connection now."""
        await self._server.drop_connections()

    async def leave_unanswered(self, request: str | int, unanswered: bool = True) -> None:
        """Ignore (True) or answer again (False) a request type, by name or message id."""
        msg_id = request_id_for(request)
        if unanswered:
            self._broker.faults.unanswered.add(msg_id)
        else:
            self._broker.faults.unanswered.discard(msg_id)

    async def reject_next_order(self, code: int = ERR_REJECTED,
                                text: str = DEFAULT_REJECT_TEXT) -> None:
        """Reject the next placed order with this IB error code and text."""
        self._broker.faults.reject_next = OrderRejection(int(code), text)

    async def set_fill_delay(self, seconds: float) -> None:
        """Delay fills of marketable orders by this many seconds (0 = immediate)."""
        self._broker.faults.fill_delay = max(float(seconds), 0.0)

    async def fill_partially(self, quantity: float) -> None:
        """Fill only this many shares of the next fill; the rest rests until a price change."""
        self._broker.faults.partial_fill_qty = float(quantity)

    async def clear_faults(self) -> None:
        """Switch every fault off and reopen the port if it was closed."""
        self._broker.faults.clear()
        await self._server.start()

    # ------------------------------------------------------------ state

    async def state(self) -> dict[str, Any]:
        """Accounts, prices, orders, executions, faults and connected clients."""
        snapshot = self._broker.snapshot()
        snapshot["clients"] = self._server.client_ids
        snapshot["listening"] = self._server.listening
        return snapshot
